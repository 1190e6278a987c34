"""CtP pretraining of R(2+1)D-18 on UCF-101: as `ucf101_r3d18` with the (2+1)D backbone."""

from ctp_tf import defaults


def get_config():
  c = defaults.pretrain_config()
  c.model.arch = "r2plus1d_18"
  c.optimizer = defaults.sgd_config(lr=0.01, weight_decay=1e-4, decay_epochs=(100, 200))
  c.train.batch_size = 32
  c.train.epochs = 300
  c.train.backup_every_steps = 200
  return c
