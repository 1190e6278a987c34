"""Guided Grad-CAM heat maps over the frames of a test clip (seed supplementary Figure 3).

  python scripts/gradcam.py --workdir=runs/ucf101_ctp --data_dir=data/ucf101 \
    --video_index=0 --out_dir=runs/ucf101_ctp/gradcam

For each chosen video: the centre clip of the 10-clip protocol, explained for the predicted
class (or --class_index), written as `video<i>.png` (frames / Grad-CAM / guided Grad-CAM) and
`video<i>.gif`.
"""

import os

from absl import app, flags

from ctp_tf import cli

flags.DEFINE_string("workdir", None, "Finetuning workdir.", required=True)
flags.DEFINE_string("data_dir", None, "Converted shards.", required=True)
flags.DEFINE_string("split", None, "Split (default: the config's test split).")
flags.DEFINE_list("video_index", ["0"], "video_index values (positions in the split).")
flags.DEFINE_integer("class_index", None, "Class to explain (default: predicted).")
flags.DEFINE_string("out_dir", None, "Output directory (default WORKDIR/gradcam).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ctp_tf.downstream import gradcam

  out_dir = FLAGS.out_dir or os.path.join(FLAGS.workdir, "gradcam")
  try:
    written = gradcam.gradcam_videos(
        FLAGS.workdir, FLAGS.data_dir, list(cli.int_list("video_index", FLAGS.video_index, minimum=0)), out_dir,
        split=FLAGS.split, class_index=FLAGS.class_index)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  for w in written:
    print(f"video {w['video_index']} (label {w['label']}, explained class {w['class_index']}): "
          f"{w['png']} {w['gif']}")


if __name__ == "__main__":
  cli.run(main)
