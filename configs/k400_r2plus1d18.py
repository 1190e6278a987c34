"""CtP pretraining of R(2+1)D-18 on Kinetics-400: as `k400_r3d18` with the (2+1)D backbone."""

from ctp_tf import defaults


def get_config():
  c = defaults.pretrain_config()
  c.model.arch = "r2plus1d_18"
  c.optimizer = defaults.sgd_config(lr=0.01, weight_decay=1e-4, decay_epochs=(30, 60))
  c.train.batch_size = 32
  c.train.epochs = 90
  c.train.backup_every_steps = 500
  c.train.checkpoint_every_epochs = 5
  return c
