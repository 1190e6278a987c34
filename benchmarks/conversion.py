#!/usr/bin/env python
"""Conversion speed on the demo data (default size): videos/s and frames/s, 1 worker and all cores.

  python benchmarks/conversion.py [--resize_short=0] [--demo_dir=D] [--workers=1,2]
  python benchmarks/conversion.py --beam [--workers=2] [--repeats=2]

Prints one JSON object. Each run converts into a fresh directory (no resume), timed from the
call to the end of dataset.json, worker start-up included.

--beam compares Apache Beam's DirectRunner on K worker processes (--workers, default 2) with the
local path on K worker processes, per video, runs alternating (local, beam, local, beam, ...) so
that a busy machine slows both alike. Each run reports its wall seconds per video (start-up
included), the span from the first shard's start to the last shard's end (without the time
to start the first worker; with any later worker's start-up lag) per video, the workers' busy
seconds per video (the sum of every shard's start-to-end time: the cost of the conversion
itself) and the driver's CPU seconds; the `beam_vs_local*` entries are ratios of the medians
(< 1: Beam is faster per video). DirectRunner
runs in each of --beam_modes (worker processes, or threads of this process).
"""

import json
import os
import shutil
import tempfile
import time

from absl import app, flags

_DEMO_DIR = flags.DEFINE_string("demo_dir", None, "Demo videos (made here if missing; default: "
                                "a temporary directory).")
_RESIZE = flags.DEFINE_integer("resize_short", 0, "--resize_short of the conversion.")
_WORKERS = flags.DEFINE_list("workers", None, "Worker counts to time (default: 1 and all cores).")
_SEED = flags.DEFINE_integer("seed", 0, "Demo data seed.")
_BEAM = flags.DEFINE_bool("beam", False, "Compare Beam's DirectRunner with the local path, both "
                          "on --workers (default 2) worker processes.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "--beam: runs of each path.")
_BEAM_MODES = flags.DEFINE_list("beam_modes", ["multi_processing", "multi_threading"],
                                "--beam: DirectRunner running modes to time.")


def main(argv):
  del argv
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  from ctp_tf.data import convert  # noqa: PLC0415
  from ctp_tf.demo import data as demo_data  # noqa: PLC0415
  tmp = tempfile.mkdtemp(prefix="ctp_conv_bench_")
  try:
    demo = _DEMO_DIR.value or os.path.join(tmp, "demo")
    start, cpu0 = time.time(), time.process_time()
    made = demo_data.make_demo_data(demo, seed=_SEED.value, progress=False)
    make_seconds, make_cpu = time.time() - start, time.process_time() - cpu0
    cores = os.cpu_count() or 1
    if _BEAM.value:
      _compare_beam(demo, tmp, made, make_seconds)
      return
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


def _compare_beam(demo, tmp, made, make_seconds):
  import statistics  # noqa: PLC0415
  from ctp_tf.data import convert  # noqa: PLC0415
  workers = int(_WORKERS.value[0]) if _WORKERS.value else 2
  paths = {"local": (None, "")}
  for mode in _BEAM_MODES.value:
    paths[f"beam DirectRunner {mode}"] = (
        "DirectRunner", f"--direct_num_workers={workers} --direct_running_mode={mode}")
  runs = []
  for r in range(_REPEATS.value):
    for name, (runner, options) in paths.items():
      out = os.path.join(tmp, f"shards_{len(runs)}")
      cpu0 = time.process_time()
      summary = convert.make_tfrecords(
          "ucf101", os.path.join(demo, "videos"), out, split_dir=demo,
          resize_short=_RESIZE.value, workers=workers, progress=False, beam_runner=runner,
          beam_options=options)
      videos = summary["videos"] + summary["failures"]
      span = summary["convert_span_seconds"]
      runs.append({"path": name, "repeat": r, "workers": workers,
                   "seconds": summary["seconds"],
                   "seconds_per_video": round(summary["seconds"] / videos, 4),
                   "convert_span_seconds": span,
                   "span_seconds_per_video": round(span / videos, 4),
                   "startup_and_overhead_seconds": round(summary["seconds"] - span, 2),
                   "worker_seconds_per_video": round(summary["worker_seconds"] / videos, 4),
                   "driver_cpu_seconds": round(time.process_time() - cpu0, 2),
                   "videos": summary["videos"], "frames": summary["frames"],
                   "failures": summary["failures"],
                   "beam_counters": summary.get("beam_counters")})
      shutil.rmtree(out, ignore_errors=True)

  def median(key):
    return {p: statistics.median(r[key] for r in runs if r["path"] == p) for p in paths}

  per_video, span = median("seconds_per_video"), median("span_seconds_per_video")
  work = median("worker_seconds_per_video")
  print(json.dumps({
      "benchmark": "conversion --beam", "dataset": "demo (ucf101 layout)",
      "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
      "resize_short": _RESIZE.value, "workers": workers, "demo_videos": made["videos"],
      "demo_frames": made["frames"], "demo_make_seconds": round(make_seconds, 2),
      "median_seconds_per_video": per_video,
      "median_span_seconds_per_video": span,
      "beam_vs_local": {p: round(per_video[p] / per_video["local"], 3)
                        for p in paths if p != "local"},
      "beam_vs_local_span": {p: round(span[p] / span["local"], 3)
                             for p in paths if p != "local"},
      "median_worker_seconds_per_video": work,
      "beam_vs_local_worker_seconds": {p: round(work[p] / work["local"], 3)
                                       for p in paths if p != "local"},
      "runs": runs}, indent=2))


if __name__ == "__main__":
  app.run(main)
