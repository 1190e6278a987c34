"""Video conversion on Apache Beam (Dataflow, Flink, Spark, DirectRunner): the same output as
`convert.convert_dataset`, from workers of a cluster instead of processes of one host.

Everything but the decoding runs on the launching machine exactly as in the local path: the
listing and its checks (`converters.list_videos`), the label check, the shard plan and the
resume / foreign-shard checks (`convert.plan_conversion`). So a bad input stops before a job is
submitted. Each shard to write gets a small task file `shard_info/<shard>.task.json` (its
videos), so the job graph holds only their paths (Dataflow limits a graph to 10 MB), and the
pipeline is

  Create(task files) -> Reshuffle -> ConvertShards (convert.convert_shard: decode, resize, JPEG,
  the shard under a temporary name + rename, then its sidecar)
                                    -> failures output -> shard_info/beam_failures.json

A worker converts whole shards, as a local worker process does, so shards, sidecars and resume
are the same; a video that cannot be decoded goes to the failures output and the shard's
sidecar, never crashing the job. After the job, the launcher reads every sidecar and writes
`dataset.json` with the same code as the local path.

Progress: Beam counters in the namespace `ctp_tf.convert` (`videos_done`, `videos_failed`,
`frames`, `shards`), shown live in the runner's UI and printed at the end.

All reads and writes of the job go through tf.io.gfile, so paths may be gs:// (or anything
tf.io.gfile reads) whatever filesystems Beam itself was installed with; remote videos are
copied to a local temporary file before decoding.

apache_beam is imported only when a pipeline is built, so `ctp_tf` imports without it.
"""

import concurrent.futures
import json
import os
import shlex
import sys
import time

from ctp_tf.data import converters, shards
from ctp_tf.data import convert_core as convert

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
COUNTER_NAMESPACE = "ctp_tf.convert"
COUNTERS = ("videos_done", "videos_failed", "frames", "shards")
TASK_SUFFIX = ".task.json"
FAILURES_FILE = "beam_failures.json"
FAILURES = "failures"


class BeamSetupError(ValueError):
  """Apache Beam is not installed, or the runner cannot work with these paths or options."""


def import_beam():
  try:
    import apache_beam  # noqa: PLC0415
  except ImportError as e:
    raise BeamSetupError(
        f"--beam_runner needs Apache Beam ({e}): pip install -e \".[beam]\"") from None
  return apache_beam


# ------------------------------------------------------------------------------ shard tasks

def task_to_json(task):
  return json.dumps({
      "split": task.split, "shard": task.shard, "num_shards": task.num_shards,
      "path": task.path, "info_path": task.info_path,
      "items": [[i, e.path, e.label, e.label_string, e.media_id] for i, e in task.items]})


def task_from_json(line):
  d = json.loads(line)
  items = [(i, converters.VideoEntry(path=p, label=lab, label_string=s, media_id=m))
           for i, p, lab, s, m in d.pop("items")]
  return convert.ShardTask(items=items, **d)


# ------------------------------------------------------------------------------ worker side

_WORKER_READY = False


def _init_worker():
  """Once per worker process: TF's thread pools at one thread (one SDK process per core)."""
  global _WORKER_READY
  if _WORKER_READY:
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # noqa: PLC0415
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:  # TF already initialised in this process (DirectRunner in memory)
    pass
  _WORKER_READY = True


def task_file(task):
  return task.info_path[:-len(".json")] + TASK_SUFFIX


def convert_shard_task(path, settings):
  """Beam FlatMap: a task file -> the shard written (its path); failures to the failures output."""
  from apache_beam import pvalue  # noqa: PLC0415
  from apache_beam.metrics import Metrics  # noqa: PLC0415
  import tensorflow as tf  # noqa: PLC0415
  _init_worker()
  with tf.io.gfile.GFile(path) as f:
    task = task_from_json(f.read())
  done, failed, frames = (Metrics.counter(COUNTER_NAMESPACE, n) for n in COUNTERS[:3])

  def report(videos, num_frames, failures):
    if failures:
      failed.inc(failures)
    if videos - failures:
      done.inc(videos - failures)
    if num_frames:
      frames.inc(num_frames)

  info = convert.convert_shard(task, settings, report=report)
  Metrics.counter(COUNTER_NAMESPACE, "shards").inc()
  for f in info["failures"]:
    yield pvalue.TaggedOutput(FAILURES, {**f, "shard": os.path.basename(task.path)})
  yield task.path


def write_failures(failures, path):
  """Beam Map: the failures output, all of it, as one JSON list (sorted by path)."""
  shards.write_json_atomic(path, sorted(failures, key=lambda f: (f["path"], f["reason"])))


# ------------------------------------------------------------------------------ launcher side

def pipeline_options(runner, beam_options="", workers=1):
  """PipelineOptions flags: the runner, DirectRunner's worker processes, then --beam_options."""
  if runner not in RUNNERS:
    raise BeamSetupError(f"--beam_runner={runner!r}: expected one of {', '.join(RUNNERS)}")
  try:
    extra = shlex.split(beam_options or "")
  except ValueError as e:
    raise BeamSetupError(f"--beam_options: {e}") from None
  flags = [f"--runner={runner}"]
  given = {a.split("=", 1)[0] for a in extra}
  if runner == "DirectRunner" and "--direct_num_workers" not in given:
    # Processes, like the local path: decoding holds the GIL for part of each frame.
    flags += [f"--direct_num_workers={max(1, int(workers))}",
              "--direct_running_mode=" + ("multi_processing" if workers > 1 else "in_memory")]
  if runner == "DirectRunner" and "--default_sdk_harness_log_level" not in given:
    flags.append("--default_sdk_harness_log_level=WARNING")  # not a page of INFO per worker
  return flags + extra


def _runner(name, options):
  """DirectRunner: Beam's FnApiRunner, set up as DirectRunner sets it up. DirectRunner itself
  would first try Prism, a binary it downloads at run time (which ignores
  --direct_num_workers), and fall back to the FnApiRunner when that fails. Others: by name."""
  if name != "DirectRunner":
    return None
  from apache_beam.portability.api import beam_provision_api_pb2  # noqa: PLC0415
  from apache_beam.runners.portability.fn_api_runner import fn_runner  # noqa: PLC0415
  from apache_beam.runners.portability.portable_runner import JobServiceHandle  # noqa: PLC0415
  encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
  return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
      beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def _direct_workers(flags):
  """DirectRunner's worker count from the final flags (None for other runners)."""
  if "--runner=DirectRunner" not in flags:
    return None
  values = [f.split("=", 1)[1] for f in flags if f.startswith("--direct_num_workers=")]
  return int(values[-1]) if values else 1


def _check_paths(runner, out_dir, splits):
  if runner != "DataflowRunner":
    return
  local = [p for p in [out_dir] + [e.path for es in splits.values() for e in es[:1]]
           if not convert.is_remote(p)]
  if local:
    raise BeamSetupError(
        f"--beam_runner=DataflowRunner: workers cannot read or write the local path(s) "
        f"{local}: put the videos and --out_dir on gs://")


def _write_text(path, text):
  import tensorflow as tf  # noqa: PLC0415
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text)


def _read_sidecars(tasks):
  def load(task):
    try:
      return task.path, convert._load_json(task.info_path)  # noqa: SLF001 -- same module family
    except Exception as e:  # noqa: BLE001
      raise RuntimeError(f"the Beam job finished but shard {task.path} has no readable sidecar "
                         f"{task.info_path} ({type(e).__name__}: {e}); re-run to write it")
  with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
    return dict(pool.map(load, tasks))


def _counters(result):
  from apache_beam.metrics.metric import MetricsFilter  # noqa: PLC0415
  out = dict.fromkeys(COUNTERS, 0)
  try:
    query = result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE))
  except Exception:  # noqa: BLE001 -- some runners do not report metrics to the launcher
    return None
  for c in query["counters"]:
    value = c.committed if c.committed is not None else c.attempted
    out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
  return out


def convert_dataset(splits, out_dir, *, classes, runner="DirectRunner", beam_options="",
                    workers=1, resize_short=128, videos_per_shard=None, num_shards=None,
                    min_shards=convert.DEFAULT_MIN_SHARDS, jpeg_quality=90, keep_partial=False,
                    overwrite=False, progress=True, failures=(), source=None):
  """`convert.convert_dataset` on a Beam runner; the same arguments, output and summary.

  Args:
    runner: one of `RUNNERS`.
    beam_options: more pipeline options as one string, e.g. "--project=P --region=R
      --temp_location=gs://B/tmp --setup_file=./setup.py" for Dataflow.
    workers: DirectRunner's worker processes (`--direct_num_workers`) unless beam_options sets
      them; other runners size themselves.
    Everything else: as `convert.convert_dataset`.

  Returns:
    The summary of `convert.convert_dataset` plus `runner` and `beam_counters`.

  Raises:
    BeamSetupError: no Apache Beam, an unknown runner, or local paths with DataflowRunner.
    convert.AllVideosFailedError: every video of a split failed (dataset.json is written first).
  """
  import tensorflow as tf  # noqa: PLC0415
  start = time.time()
  flags = pipeline_options(runner, beam_options, workers)
  _check_paths(runner, out_dir, splits)
  beam = import_beam()
  plan = convert.plan_conversion(
      splits, out_dir, classes=classes, resize_short=resize_short,
      videos_per_shard=videos_per_shard, num_shards=num_shards, min_shards=min_shards,
      jpeg_quality=jpeg_quality, keep_partial=keep_partial, overwrite=overwrite,
      progress=progress, failures=failures)
  total = sum(len(t.items) for t in plan.todo)
  if progress:
    sys.stderr.write(f"converting {total} videos into {len(plan.todo)} shard(s) in {out_dir} "
                     f"on Beam {runner}; {len(plan.done)} shard(s) already complete\n")
  counters = dict.fromkeys(COUNTERS, 0)
  if plan.todo:
    info_dir = os.path.join(out_dir, convert.SHARD_INFO_DIR)
    task_files = [task_file(t) for t in plan.todo]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
      list(pool.map(lambda t: _write_text(task_file(t), task_to_json(t)), plan.todo))
    from apache_beam.options.pipeline_options import PipelineOptions  # noqa: PLC0415
    options = PipelineOptions(flags)
    p = beam.Pipeline(runner=_runner(runner, options), options=options)
    out = (p
           | "ShardTasks" >> beam.Create(task_files, reshuffle=False)
           | "Distribute" >> beam.Reshuffle()
           | "ConvertShards" >> beam.FlatMap(convert_shard_task, plan.settings).with_outputs(
               FAILURES, main="shards"))
    _ = (out[FAILURES]
         | "CollectFailures" >> beam.combiners.ToList()
         | "WriteFailures" >> beam.Map(write_failures, os.path.join(info_dir, FAILURES_FILE)))
    result = p.run()
    state = result.wait_until_finish()
    if str(state).split(".")[-1] != "DONE":
      raise RuntimeError(f"the Beam job ended in state {state}; finished shards are kept: "
                         "re-run to resume")
    counters = _counters(result)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
      list(pool.map(tf.io.gfile.remove, task_files))
  results = _read_sidecars(plan.todo)
  meta = convert.assemble_dataset_json(plan, {**plan.done, **results}, classes=classes,
                                       failures=failures, source=source)
  shards.write_dataset_json(out_dir, meta)
  seconds = time.time() - start
  videos = sum(s["videos"] for s in meta["splits"].values())
  frames = sum(s["frames"] for s in meta["splits"].values())
  summary = {
      "out_dir": out_dir, "videos": videos, "frames": frames, "failures": len(meta["failures"]),
      "seconds": round(seconds, 3),
      "videos_per_second": round(sum(r["videos"] + len(r["failures"]) for r in results.values())
                                 / seconds, 2) if seconds > 0 else 0.0,
      "frames_per_second": round(sum(r["frames"] for r in results.values()) / seconds, 1)
                           if seconds > 0 else 0.0,
      "splits": meta["splits"], "shards_written": len(plan.todo),
      "shards_skipped": len(plan.done), "runner": runner, "beam_counters": counters,
      "workers": _direct_workers(flags),
      "convert_span_seconds": convert.conversion_span(results.values()),
      "worker_seconds": convert.worker_seconds(results.values()),
  }
  if progress:
    if counters is not None:
      sys.stderr.write("beam counters: " + " ".join(f"{k}={v}" for k, v in counters.items())
                       + "\n")
    convert.report_done(meta, out_dir, seconds, len(plan.todo), len(plan.done))
  convert.check_splits(meta, out_dir)
  return summary
