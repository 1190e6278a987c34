#!/usr/bin/env python
"""CtP pretraining: flags -> config -> `ctp_tf.training.pretrain.train`.

  python scripts/pretrain.py                                   # demo config on the demo data
  python scripts/pretrain.py --config=configs/ucf101_r3d18.py --data_dir=shards/ucf101 \\
      --workdir=runs/ucf101_r3d18 --config.model.backbone_stride=16
  python scripts/pretrain.py ... --strategy=mirrored           # all GPUs of this machine
  TF_CONFIG='{...}' python scripts/pretrain.py ... --strategy=multi_worker
  python scripts/pretrain.py ... --strategy=tpu --tpu=NAME
  python scripts/pretrain.py ... --data_service=grpc://HOST:5050   # scripts/data_service.py

Re-running the same command resumes from WORKDIR/backup. A workdir holds one model: a rerun
with another model config is refused (use a new --workdir, or --overwrite to clear it). Exit
status 0 when training completed, 1 on a NaN loss or one above train.max_loss (the last good
backup is kept and named), 2 on bad input (one line on stderr).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from ctp_tf import cli
from ctp_tf.training import config_utils

DEFAULT_CONFIG = config_utils.find_config("demo")

if __name__ == "__main__":
  cli.check_config_argv(DEFAULT_CONFIG)   # before the flag parses sys.argv

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "Experiment config file (configs/*.py); override fields with "
    "--config.a.b=value.", lock_config=True)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Converted shards (scripts/make_tfrecords.py). Default with the demo "
    "config: the demo data, made on first use.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/pretrain", "Output and resume directory.")
_STRATEGY = flags.DEFINE_enum("strategy", "auto",
                              ["auto", "default", "mirrored", "multi_worker", "tpu"],
                              "tf.distribute strategy (auto: mirrored over >1 GPU).")
_TPU = flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
_DATA_SERVICE = flags.DEFINE_string(
    "data_service", None, "tf.data service dispatcher grpc://host:port (scripts/data_service.py): "
    "its workers read and prepare the clips (sets config.data.service_address).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Clear --workdir first (start afresh) "
                                "instead of resuming; needed to reuse a workdir of another model.")
_DEMO_DIR = flags.DEFINE_string("demo_dir", None, "Cache for the demo data "
                                "(default $CTP_TF_DEMO_DIR or ~/.cache/ctp_tf/demo).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from ctp_tf.training import pretrain  # noqa: PLC0415  (imports TensorFlow)
  config = _CONFIG.value
  if _DATA_SERVICE.value is not None:
    with config.unlocked():
      config.data.service_address = _DATA_SERVICE.value
  data_dir = _DATA_DIR.value
  if not data_dir:
    from ctp_tf.demo import assets  # noqa: PLC0415  (the demo configs come with data)
    data_dir = assets.data_dir_for(config_flags.get_config_filename(flags.FLAGS["config"]),
                                   _DEMO_DIR.value)
    logging.info("No --data_dir: using the demo data in %s.", data_dir)
  metrics = pretrain.train(config, data_dir=data_dir, workdir=_WORKDIR.value,
                           strategy=_STRATEGY.value, tpu=_TPU.value, overwrite=_OVERWRITE.value)
  keys = ("status", "global_step", "loss", "iou", "iou_static")
  print(" ".join(f"{k}={metrics[k]:.4g}" if isinstance(metrics.get(k), float) else
                 f"{k}={metrics.get(k)}" for k in keys))
  if metrics["status"] in ("nan_loss", "diverged"):
    cli.fail(metrics["message"], 1)


if __name__ == "__main__":
  cli.run(main, config_default=DEFAULT_CONFIG)
