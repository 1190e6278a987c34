"""Finetune R3D-18 on Kinetics-400 (seed supplementary Table 1: scratch 64.1/85.3, CtP 65.0/85.7).

The UCF-101 recipe (16 frames, stride 2); validation on the `val` split.

  python scripts/finetune.py --config=configs/finetune_k400.py --data_dir=data/k400 \
    --workdir=runs/k400_ctp --init_from=runs/pretrain_k400/export
"""

from ctp_tf import defaults


def get_config():
  c = defaults.finetune_config()
  c.data.test_split = "val"
  return c
