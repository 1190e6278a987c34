"""Video files -> TFRecord shards of JPEG frames (one SequenceExample per video) + dataset.json.

Each video is decoded with PyAV, resized so its short side is `resize_short` (aspect kept; 0 keeps
the original size), and every frame is JPEG-encoded. Frame counts come from decoding, never from
the container header (headers lie: truncated AVIs declare frames they do not hold).

Work is split into whole shards, so a worker process writes a shard from start to end and a
shard is the unit of resume: it is written under a temporary name and renamed when complete,
followed by a small sidecar `shard_info/<shard>.json` (its videos, frames and failures). A re-run
skips every shard whose file and sidecar both exist, so an interrupted conversion finishes the
missing shards only, and failures of skipped shards still reach `dataset.json`.

A video that cannot be opened or decoded (corrupt, truncated, empty, no video stream) is listed
in `dataset.json["failures"]` with the reason; all other videos are still converted.

Example:
  from ctp_tf.data import converters, convert
  listing = converters.list_videos("ucf101", "demo/videos", split_dir="demo")
  summary = convert.convert_dataset(listing.splits, "demo_tfrecords", classes=listing.classes,
                                    resize_short=0, workers=2)
"""

import sys
import time

from ctp_tf.data import convert_core, shards
# The core's names, re-exported: `convert.X` is how users and tests name them.
from ctp_tf.data.convert_core import (  # noqa: F401
    SHARD_INFO_DIR,
    FORMAT_VERSION,
    DEFAULT_VIDEOS_PER_SHARD,
    DEFAULT_MIN_SHARDS,
    DecodedVideo,
    VideoDecodeError,
    target_size,
    iter_frames,
    is_remote,
    decode_video,
    ShardTask,
    plan_num_shards,
    plan_shards,
    convert_shard,
    _Progress,
    _run_parallel,
    AllVideosFailedError,
    ConversionPlan,
    plan_conversion,
    assemble_dataset_json,
    check_splits,
    conversion_span,
    worker_seconds,
    report_done,
)


def convert_dataset(splits, out_dir, *, classes, resize_short=128, workers=1,
                    videos_per_shard=None, num_shards=None, min_shards=DEFAULT_MIN_SHARDS,
                    jpeg_quality=90, keep_partial=False, overwrite=False, progress=True,
                    failures=(), source=None):
  """Converts `{split: [VideoEntry]}` into shards + `dataset.json` in `out_dir`; returns a summary.

  Args:
    splits: split name -> list of `converters.VideoEntry` (the order fixes `clip/index`).
    out_dir: output directory (local or gs://).
    classes: class names; `VideoEntry.label` indexes them.
    resize_short: short side in pixels after resizing (aspect kept); 0 keeps the original size.
    workers: processes; each writes whole shards. With more than one, workers start from a
      fork server, so call this from a script guarded by `if __name__ == "__main__":`.
    videos_per_shard / num_shards: shard count per split (`num_shards` wins);
      at least `min_shards` shards per split when the split has that many videos.
    jpeg_quality: JPEG quality of the stored frames.
    keep_partial: keep the frames decoded before a mid-stream decode error (else a failure).
    overwrite: rewrite every shard and remove shards this run would not write.
    progress: progress line and summary on stderr (and the empty-split warning).
    failures: failures known before decoding (e.g. missing files), kept in dataset.json.
    source: dict describing the input, stored in dataset.json.

  Returns:
    dict with videos, frames, failures, seconds, videos_per_second, frames_per_second, splits,
    shards_written, shards_skipped, out_dir.

  Raises:
    AllVideosFailedError: every video of a split failed (dataset.json is written first).
  """
  start = time.time()
  plan = plan_conversion(splits, out_dir, classes=classes, resize_short=resize_short,
                         videos_per_shard=videos_per_shard, num_shards=num_shards,
                         min_shards=min_shards, jpeg_quality=jpeg_quality,
                         keep_partial=keep_partial, overwrite=overwrite, progress=progress,
                         failures=failures)
  todo, done, settings = plan.todo, plan.done, plan.settings
  bar = _Progress(sum(len(t.items) for t in todo), progress)
  if progress:
    sys.stderr.write(f"converting {bar.total} videos into {len(todo)} shard(s) in {out_dir} "
                     f"with {max(1, min(workers, len(todo)))} worker(s); "
                     f"{len(done)} shard(s) already complete\n")
  if workers <= 1 or len(todo) <= 1:
    convert_core._PROGRESS = bar.update   # noqa: SLF001 -- convert_shard reports to it
    try:
      results = {t.path: convert_shard(t, settings) for t in todo}
    finally:
      convert_core._PROGRESS = None   # noqa: SLF001
  else:
    results = _run_parallel(todo, settings, min(workers, len(todo)), bar)
  bar.close()
  meta = assemble_dataset_json(plan, {**done, **results}, classes=classes, failures=failures,
                               source=source)
  shards.write_dataset_json(out_dir, meta)
  seconds = time.time() - start
  meta_splits = meta["splits"]
  summary = {
      "out_dir": out_dir, "videos": sum(s["videos"] for s in meta_splits.values()),
      "frames": sum(s["frames"] for s in meta_splits.values()),
      "failures": len(meta["failures"]), "seconds": round(seconds, 3),
      "videos_per_second": round(bar.videos / seconds, 2) if seconds > 0 else 0.0,
      "frames_per_second": round(bar.frames / seconds, 1) if seconds > 0 else 0.0,
      "splits": meta_splits, "shards_written": len(todo), "shards_skipped": len(done),
      "workers": max(1, min(workers, len(todo))),
      "convert_span_seconds": conversion_span(results.values()),
      "worker_seconds": worker_seconds(results.values()),
  }
  if progress:
    report_done(meta, out_dir, seconds, len(todo), len(done))
  check_splits(meta, out_dir)
  return summary


def make_tfrecords(dataset, video_dir, out_dir, *, split_dir=None, split=1, annotations=None,
                   skip_missing=False, beam_runner=None, beam_options="", **kwargs):
  """Lists and checks the dataset (`converters.list_videos`), then `convert_dataset`.

  With `beam_runner` (DirectRunner, DataflowRunner, FlinkRunner, SparkRunner) the videos are
  converted by an Apache Beam pipeline (`convert_beam.convert_dataset`, `beam_options` its
  pipeline options) after the same listing and checks; the output is the same.
  """
  from ctp_tf.data import converters  # noqa: PLC0415
  listing = converters.list_videos(dataset, video_dir, split_dir=split_dir, split=split,
                                   annotations=annotations, skip_missing=skip_missing)
  failures = [{"path": m["path"], "reason": f"file not found (listed in {m['listed_in']})",
               "split": m["split"]} for m in listing.missing]
  if beam_runner:
    from ctp_tf.data import convert_beam  # noqa: PLC0415
    return convert_beam.convert_dataset(listing.splits, out_dir, classes=listing.classes,
                                        failures=failures, source=listing.source,
                                        runner=beam_runner, beam_options=beam_options, **kwargs)
  return convert_dataset(listing.splits, out_dir, classes=listing.classes, failures=failures,
                         source=listing.source, **kwargs)
