"""CtP pretraining of R3D-18 on Kinetics-400: 90 epochs, lr x0.1 at 30 and 60, batch 32.

Data: scripts/make_tfrecords.py --dataset=kinetics --annotations=... then --data_dir=<shards>.
On 8 GPUs: --strategy=mirrored (global batch 8 x 32 = 256, lr scaled linearly to 0.08).
"""

from ctp_tf import defaults


def get_config():
  c = defaults.pretrain_config()
  c.model.arch = "r3d_18"
  c.optimizer = defaults.sgd_config(lr=0.01, weight_decay=1e-4, decay_epochs=(30, 60))
  c.train.batch_size = 32
  c.train.epochs = 90
  c.train.backup_every_steps = 500
  c.train.checkpoint_every_epochs = 5
  return c
