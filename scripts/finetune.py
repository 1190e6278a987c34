"""Finetunes an action classifier, from scratch or from an encoder export; resumes after a kill.

  python scripts/finetune.py --config=configs/finetune_ucf101.py --data_dir=data/ucf101 \
    --workdir=runs/ucf101_ctp --init_from=runs/pretrain/export
  python scripts/finetune.py --data_dir=data/demo --workdir=runs/ft_demo   # demo config
  python scripts/finetune.py ... --config.train.epochs=20 --config.optimizer.lr=0.005

A workdir holds one model: a rerun with another model config or classes is refused (use a new
--workdir, or --overwrite to clear it). User mistakes: one line on stderr, exit 2; a diverged
loss (non-finite or above train.max_loss): exit 1.

Writes WORKDIR/config.json, history.json, log.csv, tb/, backup/, checkpoints/ and
final.weights.h5 (the last epoch's model); evaluate it with scripts/evaluate.py.
"""

from absl import flags

from ctp_tf import cli
from ctp_tf.training import config_utils
from ml_collections import config_flags

DEFAULT_CONFIG = config_utils.find_config("finetune_demo")

if __name__ == "__main__":
  cli.check_config_argv(DEFAULT_CONFIG)   # before the flag parses sys.argv

config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG,
    "Finetuning config file (configs/finetune_*.py); override fields with --config.a.b=v.",
    lock_config=True)
flags.DEFINE_string("data_dir", None, "Converted shards (train/test splits); default with a "
                    "demo config: the embedded demo data (made on first use).")
flags.DEFINE_string("workdir", None, "Output directory; rerun with the same one to resume.",
                    required=True)
flags.DEFINE_string("init_from", None, "Encoder export directory (default: train from scratch).")
flags.DEFINE_string("strategy", "auto", "auto|default|mirrored|multi_worker|tpu")
flags.DEFINE_string("tpu", None, "TPU address for --strategy=tpu.")
flags.DEFINE_bool("overwrite", False, "Clear --workdir first (start afresh) instead of resuming; "
                  "needed to reuse a workdir of another model.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ctp_tf.downstream import export, finetune

  data_dir = FLAGS.data_dir
  if not data_dir:
    from ctp_tf.demo import assets  # the demo configs come with data
    data_dir = assets.data_dir_for(config_flags.get_config_filename(FLAGS["config"]))
  try:
    result = finetune.finetune(FLAGS.config, data_dir=data_dir, workdir=FLAGS.workdir,
                               init_from=FLAGS.init_from, strategy=FLAGS.strategy,
                               tpu=FLAGS.tpu, overwrite=FLAGS.overwrite)
  except export.ExportError as e:
    raise export.ExportError(f"--init_from: {e}") from None
  print({k: v for k, v in result.items()})


if __name__ == "__main__":
  cli.run(main, config_default=DEFAULT_CONFIG)
