"""Toy sizes for the tests: R3D-10 at width 1/8 on 8 x 32 x 32 clips, a few steps.

  configs/tiny.py            pretraining, 2 trajectories (tests/pretrain_helpers.tiny_config)
  configs/tiny.py:finetune   finetuning (tests/test_finetune.py, tests/test_robustness.py)

Tests change what they are about (epochs, steps, ...) on top; the sizes live only here. The
demo's own toy sizes (`scripts/demo.py --tiny`) are in `ctp_tf/demo/run.py`.
"""

from ctp_tf import defaults


def get_config(arg="pretrain"):
  if arg == "finetune":
    return _finetune()
  if arg != "pretrain":
    raise ValueError(f"configs/tiny.py: unknown variant {arg!r} (pretrain or finetune)")
  c = defaults.pretrain_config()
  c.data.clip_len = 8
  c.data.strides = (1, 2)
  c.data.short_sides = (32, 36)
  c.data.crop_size = 32
  c.data.shuffle_buffer = 8
  c.synthesis.num_trajectories = 2
  c.synthesis.scales = (6, 8, 10, 12)
  c.synthesis.speed = 1.0
  c.model.arch = "r3d_10"
  c.model.width_multiplier = 0.125
  c.model.hidden = 32
  c.optimizer = defaults.sgd_config(lr=0.01, weight_decay=1e-4, decay_epochs=(1,))
  c.train.batch_size = 2
  c.train.epochs = 2
  c.train.steps_per_epoch = 3
  c.train.backup_every_steps = 2
  c.train.log_every_steps = 1
  c.train.keep_checkpoints = 2
  c.train.log_images = False
  c.train.verbose = 0
  return c


def _finetune():
  c = defaults.finetune_config()
  c.data.clip_len, c.data.stride, c.data.crop_size = 8, 2, 32
  c.data.sizes = ((43, 32), (48, 36))
  c.data.test_resize = (43, 32)
  c.data.num_test_clips = 2
  c.data.shuffle_buffer = 8
  c.model.arch, c.model.width_multiplier = "r3d_10", 0.125
  c.optimizer = defaults.sgd_config(lr=0.02, weight_decay=5e-4, decay_epochs=(1,))
  c.train.batch_size = 2
  c.train.epochs = 2
  c.train.steps_per_epoch = 2
  c.train.eval_every_epochs = 1
  c.train.eval_batch_size = 4
  c.train.backup_every_steps = 1
  c.train.log_every_steps = 1
  c.train.verbose = 0
  return c
