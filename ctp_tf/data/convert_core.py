"""The conversion core shared by the local (`convert.py`) and Beam (`convert_beam.py`) runners:
decode a video, plan shards, write one shard with its sidecar, assemble dataset.json.

`convert.py` runs these in worker processes of one host; `convert_beam.py` on the workers of
a Beam cluster. Both import this module, never each other's. Its names are re-exported by
`convert.py` (`convert.decode_video`, `convert.ShardTask`, ...), the name users know.
"""


import concurrent.futures
import dataclasses
import datetime
import math
import multiprocessing
import os
import queue as queue_lib
import signal
import sys
import threading
import time

import av
import numpy as np

from ctp_tf.data import shards

SHARD_INFO_DIR = "shard_info"
SHARD_ORDER_SEED = 20210331    # fixed: a conversion is a pure function of its inputs
# Names the write order in dataset.json: shards written before it held the split lists' class
# order (caches such as the demo's check it to convert again).
SHARD_ORDER = "permuted-v1"
FORMAT_VERSION = 1
DEFAULT_VIDEOS_PER_SHARD = 64
# At least this many shards per split (when there are that many videos): balances the workers
# and lets several input pipelines read disjoint shards even for the small demo set.
DEFAULT_MIN_SHARDS = 4


@dataclasses.dataclass
class DecodedVideo:
  jpegs: list
  height: int
  width: int
  frame_rate: float
  header_frames: int           # what the container claims (0 when it does not say)
  error: str = ""              # decode error after some frames (kept only with keep_partial)


class VideoDecodeError(Exception):
  """A video that cannot be converted; the message is the reason recorded in failures."""


def target_size(height, width, resize_short):
  """(height, width) with the short side `resize_short`, aspect kept; 0 keeps the size."""
  if not resize_short:
    return height, width
  if height <= width:
    return int(resize_short), max(1, int(round(width * resize_short / height)))
  return max(1, int(round(height * resize_short / width))), int(resize_short)


def iter_frames(path, resize_short=0):
  """Yields (rgb uint8 [H, W, 3], container) per decoded frame, resized to the short side.

  The size is fixed by the first frame, so a stream that changes resolution mid-way still gives
  frames of one size. Raises `VideoDecodeError` for files that cannot be opened or hold no video.
  """
  try:
    container = av.open(path)
  except Exception as e:  # noqa: BLE001 -- any open failure is a per-video failure
    raise VideoDecodeError(f"cannot open: {type(e).__name__}: {e}") from None
  with container:
    if not container.streams.video:
      raise VideoDecodeError("no video stream")
    stream = container.streams.video[0]
    size = None
    for frame in container.decode(stream):
      if size is None:
        size = target_size(frame.height, frame.width, resize_short)
      h, w = size
      if (frame.height, frame.width) == (h, w):
        yield frame.to_ndarray(format="rgb24"), container
      else:
        # AREA averages when shrinking (no aliasing of fine texture), like cv2.INTER_AREA.
        yield frame.to_ndarray(width=w, height=h, format="rgb24",
                               interpolation="AREA"), container


def _encode_jpeg(rgb, quality):
  import tensorflow as tf  # noqa: PLC0415 -- the workers import TF once, lazily
  return tf.io.encode_jpeg(rgb, quality=quality, chroma_downsampling=True).numpy()


def is_remote(path):
  """True for paths only tf.io.gfile reads (gs://, s3://, ram://...), not the local disk."""
  return "://" in str(path)


def _decode_remote(path, **kwargs):
  """Copies a remote video (gs://...) to a local temporary file, which PyAV can open."""
  import tempfile  # noqa: PLC0415
  import tensorflow as tf  # noqa: PLC0415
  if not tf.io.gfile.exists(path):
    raise VideoDecodeError("file not found")
  fd, local = tempfile.mkstemp(prefix="ctp_video_", suffix=os.path.splitext(path)[1])
  os.close(fd)
  try:
    tf.io.gfile.copy(path, local, overwrite=True)
    return decode_video(local, **kwargs)
  finally:
    os.remove(local)


def decode_video(path, *, resize_short=128, jpeg_quality=90, keep_partial=False):
  """Decodes one video into JPEG frames. Raises `VideoDecodeError` with the failure reason.

  `path` may be remote (gs://...): it is then copied to a local temporary file first.
  """
  if is_remote(path):
    return _decode_remote(path, resize_short=resize_short, jpeg_quality=jpeg_quality,
                          keep_partial=keep_partial)
  if not os.path.isfile(path):
    raise VideoDecodeError("file not found")
  if os.path.getsize(path) == 0:
    raise VideoDecodeError("empty file (0 bytes)")
  jpegs, shape, error, rate, header = [], None, "", 0.0, 0
  frames = iter_frames(path, resize_short)
  try:
    for rgb, container in frames:
      if shape is None:
        stream = container.streams.video[0]
        header = int(stream.frames or 0)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate = float(fps) if fps else 0.0
        shape = rgb.shape[:2]
      jpegs.append(_encode_jpeg(rgb, jpeg_quality))
  except VideoDecodeError:
    raise
  except Exception as e:  # noqa: BLE001 -- corrupt data mid-stream
    error = f"decode error after {len(jpegs)} frame(s): {type(e).__name__}: {e}"
    if not (keep_partial and jpegs):
      raise VideoDecodeError(error) from None
  finally:
    frames.close()
  if not jpegs:
    raise VideoDecodeError("no frames decoded")
  return DecodedVideo(jpegs, int(shape[0]), int(shape[1]), rate, header, error)


# ------------------------------------------------------------------------------ shard planning

@dataclasses.dataclass
class ShardTask:
  split: str
  shard: int
  num_shards: int
  items: list                  # [(index in split, VideoEntry)]
  path: str
  info_path: str


def plan_num_shards(num_videos, *, videos_per_shard=None, num_shards=None,
                    min_shards=DEFAULT_MIN_SHARDS):
  if num_shards:
    return max(1, min(int(num_shards), max(num_videos, 1)))
  per = int(videos_per_shard or DEFAULT_VIDEOS_PER_SHARD)
  return max(1, math.ceil(num_videos / per), min(num_videos, int(min_shards)))


def shard_order(num_videos):
  """The order videos are written in: a permutation fixed by the split's size alone.

  Split lists (UCF-101's trainlist, Kinetics' CSVs) are sorted by class. Written in that order,
  every shard would be class-sorted, and so would the interleaved stream a reader makes of
  them (round-robin shards are all at the same class at the same position): a shuffle buffer
  much smaller than the split then yields batches of two or three classes.
  """
  return np.random.default_rng([SHARD_ORDER_SEED, int(num_videos)]).permutation(num_videos)


def plan_shards(splits, out_dir, **kwargs):
  """Videos in `shard_order`, dealt round-robin to the shards: each shard mixes the classes.

  A video keeps its index in the split list (`video_index`) wherever it is written.
  """
  tasks = []
  for split, entries in splits.items():
    n = plan_num_shards(len(entries), **kwargs)
    order = shard_order(len(entries))
    for s in range(n):
      name = shards.shard_name(split, s, n)
      tasks.append(ShardTask(
          split, s, n, [(int(i), entries[i]) for i in order[s::n]],
          os.path.join(out_dir, name),
          os.path.join(out_dir, SHARD_INFO_DIR, name[:-len(".tfrecord")] + ".json")))
  return tasks


def _settings(resize_short, jpeg_quality, keep_partial):
  return {"resize_short": int(resize_short), "jpeg_quality": int(jpeg_quality),
          "keep_partial": bool(keep_partial), "format_version": FORMAT_VERSION}


def _load_json(path):
  import json  # noqa: PLC0415
  import tensorflow as tf  # noqa: PLC0415
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _check_existing(tasks, out_dir, settings, overwrite):
  """Finds complete shards to skip; refuses (or with overwrite removes) foreign shards.

  Returns {shard path: sidecar dict} of shards to keep.
  """
  import tensorflow as tf  # noqa: PLC0415
  planned = {t.path for t in tasks}
  counts = {t.split: t.num_shards for t in tasks}
  stale = []
  for split, n in counts.items():
    for path in tf.io.gfile.glob(shards.shard_pattern(out_dir, split)):
      if path not in planned:
        stale.append(path)
  # Temporary files of an interrupted run of these shards are never readable; remove them.
  for split, n in counts.items():
    for pattern in (f"{split}-*-of-{n:05d}.tfrecord.tmp-*",
                    os.path.join(SHARD_INFO_DIR, f"{split}-*-of-{n:05d}.json.tmp-*")):
      for path in tf.io.gfile.glob(os.path.join(out_dir, pattern)):
        tf.io.gfile.remove(path)
  if stale and not overwrite:
    raise FileExistsError(
        f"{out_dir!r} holds shards that this conversion would not write (another shard count "
        f"or an earlier conversion):{_listing(stale)}\nUse another --out_dir, or --overwrite.")
  for path in stale:
    tf.io.gfile.remove(path)
  done, conflicts = {}, []
  for t in tasks:
    if overwrite or not (tf.io.gfile.exists(t.path) and tf.io.gfile.exists(t.info_path)):
      continue
    info = _load_json(t.info_path)
    media = [e.media_id for _, e in t.items]
    if info.get("settings") != settings or info.get("media_ids") != media:
      conflicts.append(t.path)
    else:
      done[t.path] = info
  if conflicts:
    raise FileExistsError(
        f"{len(conflicts)} shard(s) in {out_dir!r} were written with other settings or other "
        f"videos:{_listing(conflicts)}\nUse another --out_dir, or --overwrite.")
  return done


def _listing(items, limit=10):
  items = list(items)
  more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
  return "\n  " + "\n  ".join(items[:limit]) + more


# ------------------------------------------------------------------------------ worker side

_PROGRESS = None


def _watch_parent(parent_pid):
  # A worker whose driver died (SIGKILL, OOM) would otherwise block on its queues forever.
  while True:
    time.sleep(0.5)
    try:
      os.kill(parent_pid, 0)
    except ProcessLookupError:
      os._exit(1)
    except PermissionError:
      pass


def _init_worker(progress_queue, parent_pid):
  global _PROGRESS
  _PROGRESS = progress_queue
  threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # noqa: PLC0415
  # One process per core: TF's own thread pools would only oversubscribe.
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:
    pass


def _report(videos, frames, failures):
  if _PROGRESS is not None:
    _PROGRESS(videos, frames, failures) if callable(_PROGRESS) else _PROGRESS.put(
        (videos, frames, failures))


def convert_shard(task, settings, report=None):
  """Writes one whole shard (temp name + rename) and then its sidecar; returns the sidecar.

  `report(videos, frames, failures)` is called after each video (default: the progress queue).
  """
  report = report or _report
  info = {"split": task.split, "shard": task.shard, "num_shards": task.num_shards,
          "settings": settings, "media_ids": [e.media_id for _, e in task.items],
          "videos": 0, "frames": 0, "failures": [], "partial": [], "header_mismatches": [],
          "started": time.time()}  # wall-clock span of the work, for benchmarks

  def records():
    for index, entry in task.items:
      try:
        video = decode_video(entry.path, resize_short=settings["resize_short"],
                             jpeg_quality=settings["jpeg_quality"],
                             keep_partial=settings["keep_partial"])
      except VideoDecodeError as e:
        info["failures"].append({"path": entry.path, "reason": str(e), "split": task.split})
        report(1, 0, 1)
        continue
      if video.error:
        info["partial"].append({"path": entry.path, "frames": len(video.jpegs),
                                "reason": video.error})
      if video.header_frames and video.header_frames != len(video.jpegs):
        info["header_mismatches"].append({"path": entry.path, "header_frames":
                                          video.header_frames, "frames": len(video.jpegs)})
      example = shards.make_sequence_example(
          video.jpegs, media_id=entry.media_id, label_index=entry.label,
          label_string=entry.label_string, height=video.height, width=video.width,
          frame_rate=video.frame_rate, index=index)
      info["videos"] += 1
      info["frames"] += len(video.jpegs)
      report(1, len(video.jpegs), 0)
      yield example.SerializeToString()

  shards.write_tfrecord_atomic(task.path, records())
  info["finished"] = time.time()
  shards.write_json_atomic(task.info_path, info)
  return info


# ------------------------------------------------------------------------------ driver

class _Progress:
  """One stderr line, rewritten in place on a terminal, every few seconds otherwise."""

  def __init__(self, total, enabled):
    self.total, self.enabled = total, enabled
    self.videos = self.frames = self.failures = 0
    self.start = time.time()
    self.last = 0.0
    self.tty = enabled and sys.stderr.isatty()

  def update(self, videos, frames, failures, force=False):
    self.videos += videos
    self.frames += frames
    self.failures += failures
    now = time.time()
    if not self.enabled or (not force and now - self.last < (0.2 if self.tty else 5.0)):
      return
    self.last = now
    elapsed = max(now - self.start, 1e-6)
    rate = self.videos / elapsed
    eta = f"{(self.total - self.videos) / rate:.0f}s" if self.videos >= 2 and rate > 0 else "?"
    width = 30
    filled = int(width * self.videos / max(self.total, 1))
    line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.videos}/{self.total} videos "
            f"{self.frames} frames {rate:.1f} videos/s eta {eta} failures {self.failures}")
    sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
    sys.stderr.flush()

  def close(self):
    if self.enabled:
      self.update(0, 0, 0, force=True)
      if self.tty:
        sys.stderr.write("\n")


def _run_parallel(tasks, settings, workers, progress):
  # Not fork: a fork after TF started its thread pools can deadlock. A fork server that has
  # imported this module (and so TF) but never run an op starts each worker in well under a
  # second, where spawn pays the multi-second TF import once per worker.
  ctx = multiprocessing.get_context("forkserver")
  ctx.set_forkserver_preload([__name__])
  q = ctx.Queue()
  results = {}
  pool = concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=ctx, initializer=_init_worker,
      initargs=(q, os.getpid()))
  # SIGTERM (a job scheduler's kill) takes the same clean path as Ctrl-C below.
  old_handler = None
  if threading.current_thread() is threading.main_thread():
    old_handler = signal.signal(signal.SIGTERM, _interrupt)
  try:
    futures = {pool.submit(convert_shard, t, settings): t for t in tasks}
    pending = set(futures)
    while pending:
      done, pending = concurrent.futures.wait(pending, timeout=0.1)
      _drain(q, progress)
      for f in done:
        task = futures[f]
        try:
          results[task.path] = f.result()
        except concurrent.futures.process.BrokenProcessPool:
          raise RuntimeError(
              f"a worker process died while converting {task.path} (a crash inside the video "
              "decoder?). Finished shards are kept: re-run to resume, with --workers=1 to see "
              "which video it is.") from None
    _drain(q, progress)
  except BaseException:
    # Ctrl-C or a failure: stop now instead of converting everything still queued. Half-written
    # shards only exist under temporary names, which the next run removes.
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
      proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    raise
  finally:
    if old_handler is not None:
      signal.signal(signal.SIGTERM, old_handler)
  pool.shutdown(wait=True)
  return results


def _interrupt(signum, frame):
  del frame
  raise KeyboardInterrupt(f"signal {signum}")


def _drain(q, progress):
  while True:
    try:
      progress.update(*q.get_nowait())
    except queue_lib.Empty:
      return


class AllVideosFailedError(ValueError):
  """Every video of a split failed to convert: the split would be empty (dataset.json is kept)."""


@dataclasses.dataclass
class ConversionPlan:
  """What a conversion will do, found before any decoding (shared by the local and Beam paths)."""
  out_dir: str
  settings: dict
  tasks: list                  # every ShardTask of every split, in plan order
  done: dict                   # shard path -> sidecar of complete shards kept from a past run
  todo: list                   # ShardTasks to write, largest first


def plan_conversion(splits, out_dir, *, classes, resize_short=128, videos_per_shard=None,
                    num_shards=None, min_shards=DEFAULT_MIN_SHARDS, jpeg_quality=90,
                    keep_partial=False, overwrite=False, progress=True, failures=()):
  """The checks before any work (labels, foreign or conflicting shards) and the shard plan."""
  import tensorflow as tf  # noqa: PLC0415
  settings = _settings(resize_short, jpeg_quality, keep_partial)
  for split, entries in splits.items():
    bad = [e for e in entries if not 0 <= e.label < len(classes) and e.label != -1]
    if bad:
      raise ValueError(f"split {split!r}: labels outside 0..{len(classes) - 1} for "
                       f"{[e.path for e in bad[:10]]}")
  for split, entries in splits.items():
    if entries:
      continue
    missing = [f for f in failures if f.get("split") == split]
    if missing:  # --skip_missing and nothing of the split is on disk: known before any work
      raise AllVideosFailedError(
          f"every video of split {split!r} failed before conversion ({len(missing)} of "
          f"{len(missing)}), e.g. {missing[0]['path']}: {missing[0]['reason']}")
    if progress:
      sys.stderr.write(f"warning: split {split!r} has no videos: its shards will be empty\n")
  tf.io.gfile.makedirs(os.path.join(out_dir, SHARD_INFO_DIR))
  tasks = plan_shards(splits, out_dir, videos_per_shard=videos_per_shard,
                      num_shards=num_shards, min_shards=min_shards)
  done = _check_existing(tasks, out_dir, settings, overwrite)
  todo = [t for t in tasks if t.path not in done]
  # Largest shards first: the last worker to finish then has the least left to do.
  todo.sort(key=lambda t: -len(t.items))
  return ConversionPlan(out_dir, settings, tasks, done, todo)


def assemble_dataset_json(plan, infos, *, classes, failures=(), source=None):
  """dataset.json from every shard's sidecar (`infos`: shard path -> sidecar), in plan order."""
  meta_splits, all_failures = {}, list(failures)
  partial, mismatches = [], []
  for t in plan.tasks:
    info = infos[t.path]
    s = meta_splits.setdefault(t.split, {"videos": 0, "frames": 0, "shards": t.num_shards})
    s["videos"] += info["videos"]
    s["frames"] += info["frames"]
    all_failures.extend(info["failures"])
    partial.extend(info.get("partial", []))
    mismatches.extend(info.get("header_mismatches", []))
  return {
      "classes": list(classes),
      "splits": meta_splits,
      "failures": all_failures,
      "resize_short": int(plan.settings["resize_short"]),
      "jpeg_quality": int(plan.settings["jpeg_quality"]),
      "source": source or {},
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "format_version": FORMAT_VERSION,
      "shard_order": SHARD_ORDER,
      "partial": partial,
      "header_mismatches": mismatches,
  }


def check_splits(meta, out_dir):
  """Raises `AllVideosFailedError` when every video of a split failed (empty splits: a warning
  from `plan_conversion`)."""
  for split, s in meta["splits"].items():
    if s["videos"]:
      continue
    failed = [f for f in meta["failures"] if f.get("split") == split]
    if failed:
      raise AllVideosFailedError(
          f"every video of split {split!r} failed to convert ({len(failed)} of {len(failed)}; "
          f"the reasons are in {os.path.join(out_dir, shards.DATASET_JSON)}[\"failures\"]), "
          f"e.g. {failed[0]['path']}: {failed[0]['reason']}")


def conversion_span(infos):
  """Seconds from the first shard's start to the last shard's end: the conversion itself,
  without worker start-up (None when no shard was written)."""
  infos = [i for i in infos if "started" in i and "finished" in i]
  if not infos:
    return None
  return round(max(i["finished"] for i in infos) - min(i["started"] for i in infos), 3)


def worker_seconds(infos):
  """Seconds the workers spent converting (the sum over written shards of start to end)."""
  return round(sum(i["finished"] - i["started"] for i in infos
                   if "started" in i and "finished" in i), 3)


def report_done(meta, out_dir, seconds, written, skipped):
  videos = sum(s["videos"] for s in meta["splits"].values())
  frames = sum(s["frames"] for s in meta["splits"].values())
  failures = meta["failures"]
  sys.stderr.write(
      f"done: {videos} videos, {frames} frames, {len(failures)} failure(s), "
      f"{seconds:.1f}s ({written} shard(s) written, {skipped} already complete) "
      f"-> {out_dir}\n")
  for f in failures[:10]:
    sys.stderr.write(f"  failed: {f['path']}: {f['reason']}\n")
  if len(failures) > 10:
    sys.stderr.write(f"  ... and {len(failures) - 10} more in dataset.json\n")


