"""10-clip evaluation of a finetuned classifier: top-1/top-5, per-class accuracy, confusion PNG.

  python scripts/evaluate.py --workdir=runs/ucf101_ctp --data_dir=data/ucf101 \
    --output=runs/ucf101_ctp/eval.json

Writes `{"top1", "top5", "num_videos", "per_class", "mean_class_accuracy", "confusion_matrix",
...}` to --output (default WORKDIR/eval_<split>.json) and the confusion matrix beside it.
"""

from absl import app, flags

from ctp_tf import cli

flags.DEFINE_string("workdir", None, "Finetuning workdir (config.json + final.weights.h5).",
                    required=True)
flags.DEFINE_string("data_dir", None, "Converted shards.", required=True)
flags.DEFINE_integer("num_clips", 10, "Clips per video (uniformly spread).", lower_bound=1)
flags.DEFINE_string("split", None, "Split to evaluate (default: the config's test split).")
flags.DEFINE_integer("batch_size", None, "Videos per batch (default config.train."
                     "eval_batch_size or 4).", lower_bound=1)
flags.DEFINE_string("output", None, "JSON result path.")
flags.DEFINE_string("confusion_png", None, "Confusion matrix PNG (default beside --output).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ctp_tf.downstream import evaluate

  try:
    res = evaluate.evaluate(FLAGS.workdir, FLAGS.data_dir, num_clips=FLAGS.num_clips,
                            split=FLAGS.split, batch_size=FLAGS.batch_size,
                            output=FLAGS.output, confusion_png=FLAGS.confusion_png)
  except FileNotFoundError as e:
    raise app.UsageError(str(e))
  print(f"{res['num_videos']} videos, {res['num_clips']} clips each: top-1 "
        f"{100 * res['top1']:.2f}%  top-5 {100 * res['top5']:.2f}%  mean class accuracy "
        f"{100 * (res['mean_class_accuracy'] or 0):.2f}%")
  print(f"confusion matrix: {res['confusion_png']}")


if __name__ == "__main__":
  cli.run(main)
