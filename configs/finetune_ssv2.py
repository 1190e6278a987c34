"""Finetune on Something-Something v2: 32 consecutive frames (stride 1), as the seed's section A.

The dataset emphasises fine-grained temporal relations, so clips cover 32 frames without
skipping. Validation uses the `val` split (convert with --dataset=ssv2).

  python scripts/finetune.py --config=configs/finetune_ssv2.py --data_dir=data/ssv2 \
    --workdir=runs/ssv2_ctp --init_from=runs/pretrain_k400/export
"""

from ctp_tf import defaults


def get_config():
  c = defaults.finetune_config()
  c.data.clip_len = 32
  c.data.stride = 1
  c.data.test_split = "val"
  # The seed applies the standard augmentation (flip 0.35) here too, although some SSv2 labels
  # name a direction ("pushing left to right"); --config.data.flip_prob=0 turns it off.
  return c
