#!/usr/bin/env python
"""Conversion speed on the demo data (default size): videos/s and frames/s, 1 worker and all cores.

  python benchmarks/conversion.py [--resize_short=0] [--demo_dir=D] [--workers=1,2]

Prints one JSON object. Each run converts into a fresh directory (no resume), timed from the
call to the end of dataset.json, worker start-up included.
"""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

_DEMO_DIR = flags.DEFINE_string("demo_dir", None, "Demo videos (made here if missing; default: "
                                "a temporary directory).")
_RESIZE = flags.DEFINE_integer("resize_short", 0, "--resize_short of the conversion.")
_WORKERS = flags.DEFINE_list("workers", None, "Worker counts to time (default: 1 and all cores).")
_SEED = flags.DEFINE_integer("seed", 0, "Demo data seed.")


def main(argv):
  del argv
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  from ctp_tf.data import convert, demo_data  # noqa: PLC0415
  tmp = tempfile.mkdtemp(prefix="ctp_conv_bench_")
  try:
    demo = _DEMO_DIR.value or os.path.join(tmp, "demo")
    start, cpu0 = time.time(), time.process_time()
    made = demo_data.make_demo_data(demo, seed=_SEED.value, progress=False)
    make_seconds, make_cpu = time.time() - start, time.process_time() - cpu0
    cores = os.cpu_count() or 1
    counts = [int(w) for w in _WORKERS.value] if _WORKERS.value else sorted({1, cores})
    runs = []
    for workers in counts:
      out = os.path.join(tmp, f"shards_w{workers}")
      cpu0 = time.process_time()
      summary = convert.make_tfrecords(
          "ucf101", os.path.join(demo, "videos"), out, split_dir=demo,
          resize_short=_RESIZE.value, workers=workers, progress=False)
      size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out)
                 if f.endswith(".tfrecord"))
      # CPU of this process only: all the work with 1 worker, the driver's share otherwise.
      # Less sensitive than wall time to other jobs on a shared machine.
      runs.append({"workers": workers, "seconds": summary["seconds"],
                   "driver_cpu_seconds": round(time.process_time() - cpu0, 2),
                   "videos_per_second": summary["videos_per_second"],
                   "frames_per_second": summary["frames_per_second"],
                   "videos": summary["videos"], "frames": summary["frames"],
                   "failures": summary["failures"], "shard_bytes": size})
    print(json.dumps({
        "benchmark": "conversion", "dataset": "demo (ucf101 layout)", "cpu_count": cores,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "resize_short": _RESIZE.value, "demo_videos": made["videos"],
        "demo_frames": made["frames"], "demo_make_seconds": round(make_seconds, 2),
        "demo_make_cpu_seconds": round(make_cpu, 2),
        "demo_written": made["written"], "runs": runs}, indent=2))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
