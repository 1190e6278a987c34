#!/usr/bin/env python
"""Writes the demo set: real H.264 MP4 / MJPEG AVI videos whose class is decided by motion alone.

  python scripts/make_demo_data.py --out_dir=/tmp/demo
  python scripts/make_tfrecords.py --dataset=ucf101 --video_dir=/tmp/demo/videos \\
      --split_dir=/tmp/demo --out_dir=/tmp/demo_tfrecords --resize_short=0

Layout of OUT_DIR: `videos/<Class>/v_<Class>_gXX_cYY.{mp4,avi}`, `classInd.txt`,
`trainlist01.txt`, `testlist01.txt` (UCF-101 split files) and `demo_meta.json` (every video's
main-object trajectory). Re-running over a complete directory writes nothing.
"""

import sys

from absl import app, flags

from ctp_tf import cli
from ctp_tf.demo import data as demo_data

_D = demo_data.default_sizes()   # the sizes the demo itself makes (scripts/demo.py)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Destination directory.", required=True)
_SEED = flags.DEFINE_integer("seed", 0, "Everything random derives from this seed.")
_TRAIN = flags.DEFINE_integer("train_per_class", _D["train_per_class"],
                              "Training videos per class.")
_TEST = flags.DEFINE_integer("test_per_class", _D["test_per_class"], "Test videos per class.")
_WIDTH = flags.DEFINE_integer("width", _D["width"], "Frame width (even).")
_HEIGHT = flags.DEFINE_integer("height", _D["height"], "Frame height (even).")
_MIN_FRAMES = flags.DEFINE_integer("min_frames", _D["min_frames"], "Fewest frames per video.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", _D["max_frames"], "Most frames per video.")
_FPS = flags.DEFINE_integer("fps", _D["fps"], "Frame rate written into the files.")
_MP4 = flags.DEFINE_float("mp4_fraction", _D["mp4_fraction"],
                          "Share of H.264 MP4 files (the rest MJPEG AVI).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    summary = demo_data.make_demo_data(
        _OUT_DIR.value, seed=_SEED.value, train_per_class=_TRAIN.value,
        test_per_class=_TEST.value, width=_WIDTH.value, height=_HEIGHT.value,
        min_frames=_MIN_FRAMES.value, max_frames=_MAX_FRAMES.value, fps=_FPS.value,
        mp4_fraction=_MP4.value)
  except ValueError as e:
    sys.stderr.write(f"error: {e}\n")
    return 2
  print(f"{summary['videos']} videos ({summary['written']} written, {summary['frames']} frames, "
        f"{summary['classes']} classes) in {summary['out_dir']} [{summary['seconds']}s]")
  return 0


if __name__ == "__main__":
  cli.run(main)
