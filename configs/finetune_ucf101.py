"""Finetune R3D-18 on UCF-101 split 1 (REFERENCE.md "Downstream"; seed Table 1/2 protocol).

16 frames at stride 2, multi-scale (w, h) crops to 112, flip 0.35, colour jitter, SGD lr 0.01
(batch 32), momentum 0.9, weight decay 5e-4, clip 40, 150 epochs with x0.1 at 60 and 120,
10-clip validation every 10 epochs; the last epoch's model is the result.

  python scripts/finetune.py --config=configs/finetune_ucf101.py --data_dir=data/ucf101 \
    --workdir=runs/ucf101_ctp --init_from=runs/pretrain_ucf101/export
"""

from ctp_tf import defaults


def get_config():
  c = defaults.finetune_config()
  return c
