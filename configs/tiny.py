"""Toy size for tests: R3D-10 at width 1/8 on 16 x 32 x 32 clips, a few steps."""

from ctp_tf import defaults


def get_config():
  c = defaults.pretrain_config()
  c.data.clip_len = 16
  c.data.strides = (1, 2)
  c.data.short_sides = (32, 36)
  c.data.crop_size = 32
  c.data.shuffle_buffer = 8
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
  c.train.verbose = 0
  return c
