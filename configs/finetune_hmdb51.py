"""Finetune R3D-18 on HMDB-51 split 1: the UCF-101 recipe (16 frames, stride 2, 150 epochs).

  python scripts/finetune.py --config=configs/finetune_hmdb51.py --data_dir=data/hmdb51 \
    --workdir=runs/hmdb51_ctp --init_from=runs/pretrain_ucf101/export
"""

from ctp_tf import defaults


def get_config():
  c = defaults.finetune_config()
  return c
