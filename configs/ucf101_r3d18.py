"""CtP pretraining of R3D-18 on UCF-101 split 1 (the seed's main row: 83.9 / 53.6).

300 epochs, lr x0.1 at 100 and 200, batch 32, SGD 0.01 / 0.9 / 1e-4 (PyTorch style), clip 40.
Ablations (seed tables) as overrides, e.g.:
  --config.model.backbone_stride=16          (stride 16 in pretraining: 83.5 / 52.5)
  --config.model.squeeze=False               (no temporal squeezing: 82.9 / 52.3)
  --config.model.target_stds='(0.8,0.8,0.08,0.08)'
  --config.synthesis.speed=1|5|15            (speed ablation)
  --config.synthesis.scale_rate=0.01|0.04|0.1
  --config.synthesis.inner_keyframe_probs='(0.5,0.3,0.2)'   (public-code key frames)
Data: scripts/make_tfrecords.py --dataset=ucf101 ... then --data_dir=<shards>.
"""

from ctp_tf import defaults


def get_config():
  c = defaults.pretrain_config()
  c.model.arch = "r3d_18"
  c.optimizer = defaults.sgd_config(lr=0.01, weight_decay=1e-4, decay_epochs=(100, 200))
  c.train.batch_size = 32
  c.train.epochs = 300
  c.train.backup_every_steps = 200
  return c
