r"""Finetuning input pipeline throughput: clips/s and peak RSS, 1 core and all cores.

Builds a synthetic shard set (smooth moving blobs plus mild noise, JPEG quality 90 like the
converter; about natural-video JPEG sizes) with frames stored at 320x240 and at short side 128
(171x128), then times `finetune_dataset` (read, parse, sample, decode the crop window,
scale/crop, flip, colour, batch 32) in a fresh subprocess per setting. The 1-core setting pins
the subprocess to one CPU (sched_setaffinity) and limits tf.data and op threads to 1.

Besides wall-clock clips/s it reports clips per CPU-second (process CPU time), which is what a
dedicated core would deliver and is less sensitive to other load on a shared machine.

  python benchmarks/input_pipeline.py --output=/tmp/input_pipeline.json
  python benchmarks/input_pipeline.py --reduced_decode=1.6   # 1/2-resolution JPEG decoding
                                                              # when the frame shrinks >= 1.6x
"""

import json
import os
import tempfile

from absl import app, flags

import bench_worker   # beside this script

flags.DEFINE_integer("videos", 64, "Synthetic videos per stored size.")
flags.DEFINE_integer("frames", 60, "Frames per synthetic video.")
flags.DEFINE_integer("batch_size", 32, "Clips per batch.")
flags.DEFINE_integer("batches", 12, "Timed batches per setting (after warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed batches first.")
flags.DEFINE_list("stored", ["320x240", "171x128"], "Stored frame sizes WxH.")
flags.DEFINE_list("threads", ["1", "all"], "Core settings: 1 and/or all.")
flags.DEFINE_string("reduced_decode", "false",
                    "config.reduced_decode: false, true (= 2.0) or a shrink threshold like 1.6.")
flags.DEFINE_string("work_dir", "", "Where the synthetic shards go (default: a temp dir).")
flags.DEFINE_string("output", "", "Also write the JSON here.")
# Internal: one timing run in this (sub)process.
flags.DEFINE_string("worker_data_dir", "", "Run one timing on this data dir (internal).")
flags.DEFINE_string("worker_threads", "all", "Threads of the worker (internal).")

FLAGS = flags.FLAGS


def make_shards(out_dir, width, height, videos, frames, seed=0):
  """Writes `videos` synthetic videos of `frames` JPEG frames at width x height, 4 shards."""
  import numpy as np
  import tensorflow as tf
  from ctp_tf.data import shards

  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  records = []
  for v in range(videos):
    blobs = [(rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 70) * height / 240,
              rng.uniform(-60, 60, 3), rng.uniform(-3, 3, 2)) for _ in range(10)]
    background = 110 + 40 * np.sin(xx / rng.uniform(15, 40) + rng.uniform(0, 6))[..., None]
    jpegs = []
    for t in range(frames):
      img = background + rng.normal(0, 2, (height, width, 3))
      for cy, cx, r, col, (vy, vx) in blobs:
        inside = ((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) < r * r
        img = img + inside[..., None] * col
      jpegs.append(tf.io.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8),
                                     quality=90).numpy())
    records.append(shards.make_sequence_example(
        jpegs, media_id=f"synthetic_{v}", label_index=v % 10, label_string=f"c{v % 10}",
        height=height, width=width, frame_rate=25.0, index=v).SerializeToString())
  n = 4
  for s in range(n):
    shards.write_tfrecord_atomic(os.path.join(out_dir, shards.shard_name("train", s, n)),
                                 records[s::n])
  return sum(len(r) for r in records) / (videos * frames)


def _reduced_decode():
  value = FLAGS.reduced_decode.lower()
  named = {"false": 0.0, "true": 2.0}
  return named[value] if value in named else float(value)


def run_worker(data_dir, threads):
  """Times the pipeline in this process; returns a result dict."""
  options = bench_worker.single_core(threads)
  from ctp_tf import defaults
  from ctp_tf.data import finetune_input

  config = defaults.finetune_data_config()
  config.reduced_decode = _reduced_decode()
  ds = finetune_input.finetune_dataset(data_dir, config, batch_size=FLAGS.batch_size, seed=0,
                                       options=options)
  return bench_worker.time_batches(iter(ds), warmup=FLAGS.warmup, batches=FLAGS.batches,
                                   batch_size=FLAGS.batch_size)[1]


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  if FLAGS.worker_data_dir:
    print("RESULT " + json.dumps(run_worker(FLAGS.worker_data_dir, FLAGS.worker_threads)))
    return
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix="ctp_input_bench_")
  results = {"batch_size": FLAGS.batch_size, "videos": FLAGS.videos, "frames": FLAGS.frames,
             "reduced_decode": _reduced_decode(), "pipeline": "finetune_dataset",
             "load_average_before": os.getloadavg(), "runs": []}
  for stored in FLAGS.stored:
    w, h = (int(v) for v in stored.split("x"))
    data_dir = os.path.join(work, stored)
    jpeg_bytes = bench_worker.ensure_shards(
        data_dir, lambda: make_shards(data_dir, w, h, FLAGS.videos, FLAGS.frames), stored)
    for threads in FLAGS.threads:
      args = [f"--worker_data_dir={data_dir}", f"--worker_threads={threads}",
              f"--batch_size={FLAGS.batch_size}", f"--batches={FLAGS.batches}",
              f"--warmup={FLAGS.warmup}", f"--reduced_decode={FLAGS.reduced_decode}"]
      run = {"stored": stored, "threads": threads,
             **bench_worker.run_in_subprocess(__file__, args, f"{stored}, {threads}")}
      bench_worker.add_run(results, run, jpeg_bytes)
  bench_worker.finish(results, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
