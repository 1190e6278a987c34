"""Training loss and validation accuracy per epoch for finetuning runs (seed Figure 1).

  python scripts/plot_curves.py --runs=runs/ucf_scratch,runs/ucf_ctp --labels=scratch,CtP \
    --out=runs/figure1.png
"""

import os

from absl import app, flags

from ctp_tf import cli

flags.DEFINE_list("runs", None, "Finetuning workdirs (each with history.json).", required=True)
flags.DEFINE_list("labels", None, "Legend labels, one per run (default: the dir names).")
flags.DEFINE_string("out", None, "PNG path.", required=True)
flags.DEFINE_string("title", "Finetuning", "Figure title prefix.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ctp_tf import curves

  labels = FLAGS.labels or [os.path.basename(os.path.normpath(r)) for r in FLAGS.runs]
  try:
    curves.plot_curves(FLAGS.runs, labels, FLAGS.out, title=FLAGS.title)
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e))
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  cli.run(main)
