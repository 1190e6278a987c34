#!/usr/bin/env python
"""Converts a video dataset into TFRecord shards of JPEG frames plus dataset.json.

  python scripts/make_tfrecords.py --dataset=ucf101 --video_dir=UCF-101 \\
      --split_dir=ucfTrainTestlist --split=1 --out_dir=shards/ucf101_s1 --workers=8
  python scripts/make_tfrecords.py --dataset=hmdb51 --video_dir=hmdb51 \\
      --split_dir=testTrainMulti_7030_splits --split=1 --out_dir=shards/hmdb51_s1
  python scripts/make_tfrecords.py --dataset=kinetics --video_dir=k400 \\
      --annotations=k400/train.csv,k400/validate.csv --out_dir=shards/k400 --skip_missing
  python scripts/make_tfrecords.py --dataset=ssv2 --video_dir=20bn-something-something-v2 \\
      --annotations=ssv2_labels/ --out_dir=shards/ssv2
  python scripts/make_tfrecords.py --dataset=folder --video_dir=my_videos --out_dir=shards/mine
  python scripts/make_tfrecords.py --dataset=list --video_dir=clips \\
      --annotations=train=train.txt,test=test.txt --out_dir=shards/clips
  # The same conversion as an Apache Beam pipeline (pip install -e ".[beam]"); README has a
  # complete Dataflow command.
  python scripts/make_tfrecords.py --dataset=kinetics --video_dir=gs://B/k400 \\
      --annotations=k400_csv/ --out_dir=gs://B/shards/k400 --beam_runner=DataflowRunner \\
      --beam_options="--project=P --region=R --temp_location=gs://B/tmp --setup_file=./setup.py"

Bad input (missing split files, unknown classes, listed videos not on disk) stops before any
work with the files named. Videos that fail to decode are listed in dataset.json["failures"].
Re-running the same command after an interruption writes only the missing shards.
Exit status: 0 done (failures, if any, are in dataset.json), 2 bad input or every video of a
split failed (dataset.json then lists the failures).
"""

import json
import logging
import os
import sys

from absl import app, flags

_DATASET = flags.DEFINE_enum("dataset", None, ["ucf101", "hmdb51", "kinetics", "ssv2", "folder",
                                               "list"], "Dataset layout.", required=True)
_VIDEO_DIR = flags.DEFINE_string("video_dir", None, "Directory of the video files.",
                                 required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output directory (local or gs://).",
                               required=True)
_SPLIT_DIR = flags.DEFINE_string("split_dir", None, "ucf101 / hmdb51: directory of the split "
                                 "files (default: --video_dir).")
_SPLIT = flags.DEFINE_integer("split", 1, "ucf101 / hmdb51: split number (1 to 3).")
_ANNOTATIONS = flags.DEFINE_string(
    "annotations", None, "kinetics: CSV file(s), comma-separated, or a directory of CSVs; "
    "ssv2: labels JSON or the directory of the JSONs; list: FILE or split=FILE,split=FILE.")
_RESIZE_SHORT = flags.DEFINE_integer("resize_short", 128, "Short side after resizing (aspect "
                                     "kept); 0 keeps the original size.")
_WORKERS = flags.DEFINE_integer("workers", os.cpu_count() or 1, "Worker processes.")
_VIDEOS_PER_SHARD = flags.DEFINE_integer("videos_per_shard", 64, "Videos per shard.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", None, "Shards per split (overrides "
                                   "--videos_per_shard).")
_JPEG_QUALITY = flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the stored frames.")
_SKIP_MISSING = flags.DEFINE_bool("skip_missing", False, "Record listed videos that are not on "
                                  "disk as failures instead of stopping.")
_KEEP_PARTIAL = flags.DEFINE_bool("keep_partial", False, "Keep the frames decoded before a "
                                  "mid-stream decode error instead of failing the video.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rewrite all shards (no resume) and remove "
                               "shards of these splits this run would not write.")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress line.")
_BEAM_RUNNER = flags.DEFINE_enum(
    "beam_runner", None, ["DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner"],
    "Convert with an Apache Beam pipeline on this runner (needs pip install -e \".[beam]\"); "
    "unset: worker processes on this machine (--workers).")
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_options", "", "More Beam pipeline options, one string, e.g. \"--project=P --region=R "
    "--temp_location=gs://B/tmp --setup_file=./setup.py\". DirectRunner runs --workers "
    "processes unless this sets --direct_num_workers.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from ctp_tf.data import convert, convert_beam, converters  # noqa: PLC0415
  if _RESIZE_SHORT.value < 0:
    raise app.UsageError("--resize_short must be >= 0")
  if not 1 <= _JPEG_QUALITY.value <= 100:
    raise app.UsageError("--jpeg_quality must be in 1..100")
  # Beam's INFO lines (job service, workers) would bury the progress lines.
  logging.getLogger("apache_beam").setLevel(logging.WARNING)
  try:
    summary = convert.make_tfrecords(
        _DATASET.value, _VIDEO_DIR.value, _OUT_DIR.value, split_dir=_SPLIT_DIR.value,
        split=_SPLIT.value, annotations=_ANNOTATIONS.value, skip_missing=_SKIP_MISSING.value,
        resize_short=_RESIZE_SHORT.value, workers=max(1, _WORKERS.value),
        videos_per_shard=_VIDEOS_PER_SHARD.value, num_shards=_NUM_SHARDS.value,
        jpeg_quality=_JPEG_QUALITY.value, keep_partial=_KEEP_PARTIAL.value,
        overwrite=_OVERWRITE.value, progress=not _QUIET.value, beam_runner=_BEAM_RUNNER.value,
        beam_options=_BEAM_OPTIONS.value)
  except (converters.DatasetError, FileExistsError, convert.AllVideosFailedError,
          convert_beam.BeamSetupError) as e:
    sys.stderr.write(f"error: {e}\n")
    return 2
  print(json.dumps(summary, sort_keys=True))
  return 0


if __name__ == "__main__":
  app.run(main)
