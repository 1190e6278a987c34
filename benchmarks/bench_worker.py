"""What the two input-pipeline benchmarks share: one timing per fresh subprocess.

`input_pipeline.py` and `pretrain_pipeline.py` (run as scripts: this file beside them is on
their path) time each setting in a subprocess of their own: `run_in_subprocess` starts it and
reads its `RESULT {...}` line; inside it `single_core` pins the 1-core setting and
`time_batches` times the batches; `finish` prints (and writes) the collected results.
"""

import json
import os
import subprocess
import sys
import time


def single_core(threads):
  """Imports TensorFlow (before ctp_tf, so TF_ENABLE_ONEDNN_OPTS is the environment's, e.g.
  pretrain_pipeline.py --onednn); for `threads == "1"` first pins this process to one CPU,
  then TensorFlow to one thread, and returns the tf.data.Options that keep tf.data on it;
  else returns None (TensorFlow's defaults)."""
  if threads == "1":
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  import tensorflow as tf
  if threads != "1":
    return None
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  return options


def time_batches(it, *, warmup, batches, batch_size):
  """Pulls `warmup` untimed then `batches` timed batches from `it`.

  Returns (the last batch, {clips_per_s, clips_per_cpu_s, cpu_ms_per_clip, cpus_used,
  peak_rss_mib, cores}); CPU time is this process's, so it is what a dedicated core would give.
  """
  import resource
  for _ in range(warmup):
    next(it)
  wall, cpu = time.perf_counter(), time.process_time()
  for _ in range(batches):
    batch = next(it)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  clips = batches * batch_size
  return batch, {
      "clips_per_s": round(clips / wall, 1), "clips_per_cpu_s": round(clips / cpu, 1),
      "cpu_ms_per_clip": round(1000 * cpu / clips, 2), "cpus_used": round(cpu / wall, 2),
      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "cores": len(os.sched_getaffinity(0))}


def ensure_shards(data_dir, make, label):
  """Calls `make()` (it writes 4 train shards into `data_dir`) unless they are there already;
  returns what it returns (the stored bytes per frame), None when the shards were there."""
  if os.path.exists(os.path.join(data_dir, "train-00003-of-00004.tfrecord")):
    return None
  os.makedirs(data_dir, exist_ok=True)
  t = time.time()
  value = make()
  print(f"made {label} shards in {time.time() - t:.0f}s", file=sys.stderr)
  return value


def add_run(results, run, bytes_per_frame):
  """Appends one setting's `run` dict to `results["runs"]` (with the stored bytes per frame
  when the shards were made in this invocation) and echoes it on stderr."""
  if bytes_per_frame:
    run["stored_bytes_per_frame"] = round(bytes_per_frame)
  results["runs"].append(run)
  print(json.dumps(run), file=sys.stderr)


def run_in_subprocess(script, args, what):
  """Runs the benchmark `script` with `args` in a fresh interpreter; returns its RESULT dict
  (RuntimeError naming `what` and the worker's stderr when there is none)."""
  out = subprocess.run([sys.executable, os.path.abspath(script), *args], capture_output=True,
                       text=True, check=False)
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
  if not line:
    raise RuntimeError(f"worker failed ({what}):\n{out.stderr[-3000:]}")
  return json.loads(line[0][len("RESULT "):])


def finish(results, output):
  """Adds the load average, prints the results JSON and writes it to `output` if given."""
  results["load_average_after"] = os.getloadavg()
  text = json.dumps(results, indent=2)
  print(text)
  if output:
    from ctp_tf import fileio
    fileio.write_text_atomic(output, text)
