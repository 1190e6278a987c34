#!/usr/bin/env python
"""The whole CtP protocol on the embedded demo data; report under runs/demo/.

  python scripts/demo.py                      # seeds 0-4, under 20 min on 2 cores
  python scripts/demo.py --seeds=0,1,2,3,4,5,6,7  # more seeds: narrower intervals
  python scripts/demo.py --data_dir=D         # the same protocol on your converted videos
  python scripts/demo.py --tiny --out_dir=/tmp/demo_tiny   # toy sizes, a minute or two

Stages per seed: CtP pretraining -> export -> zero-shot object tracking (demo data only) ->
retrieval and kNN probe (CtP vs random encoder) -> finetuning (scratch vs CtP, all labels and
few labels) -> 5-clip evaluation. Then results.json with paired comparisons and report.md
(that table first). Re-running continues after the last finished stage.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ctp_tf import cli  # noqa: E402
from ctp_tf.errors import UserError  # noqa: E402

_OUT = flags.DEFINE_string("out_dir", "runs/demo", "Where runs, figures and report.md go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"],
                           "Seeds; each runs every stage; the comparisons pair them.")
_TINY = flags.DEFINE_bool("tiny", False, "Toy sizes (the test suite's end-to-end check).")
_DATA = flags.DEFINE_string("data_dir", None,
                            "Converted shards with train and test splits (make_tfrecords.py "
                            "output); default: the demo data, made and cached on first use.")
_PRE = flags.DEFINE_string("pretrain_config", None,
                           "Pretraining config file (default configs/demo.py).")
_FT = flags.DEFINE_string("finetune_config", None,
                          "Finetuning config file (default configs/finetune_demo.py).")
_THREADS = flags.DEFINE_integer("intra_op_threads", None,
                                "TensorFlow intra-op threads (default: "
                                "$CTP_TF_INTRA_OP_THREADS, else TensorFlow's choice).")


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {argv[1:]}")
  from ctp_tf.demo import run
  from ctp_tf.training import config_utils
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    raise UserError(f"--seeds must be integers, got {_SEEDS.value}") from None
  if not seeds:
    raise UserError("--seeds needs at least one seed")
  for flag in (_PRE, _FT):
    if flag.value:
      try:
        config_utils.load_config_file(flag.value)
      except config_utils.ConfigFileError as e:
        raise UserError(f"--{flag.name}: {e}") from None
  if _DATA.value and not os.path.isfile(os.path.join(_DATA.value, "dataset.json")):
    raise UserError(f"--data_dir: {_DATA.value} has no dataset.json (make it with "
                    "scripts/make_tfrecords.py)")
  if _THREADS.value is not None and _THREADS.value < 1:
    raise UserError("--intra_op_threads must be >= 1")
  run.run_demo(_OUT.value, seeds=seeds, tiny=_TINY.value, data_dir=_DATA.value,
               pretrain_path=_PRE.value, finetune_path=_FT.value,
               intra_op_threads=_THREADS.value)


if __name__ == "__main__":
  cli.run(main)
