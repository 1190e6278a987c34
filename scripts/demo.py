#!/usr/bin/env python
"""The whole CtP protocol on the embedded demo data; report under runs/demo/.

  python scripts/demo.py                      # one seed, ~15 min on 2 cores
  python scripts/demo.py --seeds=0,1,2        # mean and spread over seeds
  python scripts/demo.py --tiny --out_dir=/tmp/demo_tiny   # toy sizes, a minute or two

Stages: demo data (made and converted on first use) -> CtP pretraining -> export ->
retrieval (CtP vs random encoder) -> finetuning (scratch vs CtP) -> 10-clip evaluation ->
report.md with a table and figures. Re-running continues after the last finished stage.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_OUT = flags.DEFINE_string("out_dir", "runs/demo", "Where runs, figures and report.md go.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds; each runs every stage.")
_TINY = flags.DEFINE_bool("tiny", False, "Toy sizes (the test suite's end-to-end check).")
_DATA = flags.DEFINE_string("data_dir", None,
                            "Converted demo shards; default: made and cached on first use.")


def main(argv):
  del argv
  from ctp_tf import demo
  try:
    seeds = [int(s) for s in _SEEDS.value]
  except ValueError:
    raise app.UsageError(f"--seeds must be integers, got {_SEEDS.value}")
  demo.run_demo(_OUT.value, seeds=seeds, tiny=_TINY.value, data_dir=_DATA.value)


if __name__ == "__main__":
  app.run(main)
