"""The default pretraining config: a small CtP on the embedded demo data, ~3 min a seed on 2 cores.

R3D-10 at width 1/4 on 16 x 64 x 64 clips. The synthesis sizes and speeds are the reference
ones scaled by 64/112 so patches cover the same share of the frame and move the same share of
it per frame. `data_dir` empty means: make and convert the demo data on first use
(`ctp_tf.demo.assets.ensure_demo_data`, cached in ~/.cache/ctp_tf/demo or $CTP_TF_DEMO_DIR).
"""

from ctp_tf import defaults

SCALE = 64 / 112


def get_config():
  c = defaults.pretrain_config()
  c.data.clip_len = 16
  c.data.short_sides = (64, 72, 80)
  c.data.crop_size = 64
  c.data.shuffle_buffer = 64
  c.synthesis.scales = tuple(max(4, round(s * SCALE)) for s in c.synthesis.scales)
  c.synthesis.speed = round(c.synthesis.speed * SCALE, 2)
  # Hard-edged, opaque, always-visible rectangles. On the demo videos (patches of dark texture
  # pasted on the same texture) the reference's soft edges, ellipses/rhombi, opacity 0.8-1 and
  # 20% hidden frames kept the IoU on the static guess for 288 steps in seeds 0 and 1; with
  # these four settings seed 1 left it after ~200 steps (0.49 against 0.44 at step 288) and
  # seed 0 after ~280. The reference configs keep the paper's settings.
  c.synthesis.mask_probs = (1.0, 0.0, 0.0)
  c.synthesis.soft_edge_prob = 0.0
  c.synthesis.opacity_range = (1.0, 1.0)
  c.synthesis.visible_prob = 1.0
  # Straight trajectories at constant speed (no inner key frames): seed 1, 10 epochs on the
  # version-4 data, the IoU left the static guess at epoch 6 and was 0.14 above it at epoch
  # 10; with the reference's 3-5 key frames it was level until epoch 9 (+0.01 at epoch 10).
  c.synthesis.inner_keyframe_probs = (1.0, 0.0, 0.0, 0.0)
  c.model.arch = "r3d_10"
  c.model.width_multiplier = 0.25
  c.model.hidden = 128
  # The reference N(0, 0.001) for both head FCs starts at a saddle that short runs do not
  # leave: on plainly visible trajectories (tests/test_pretrain.py, tiny model, 60 SGD steps)
  # it ended at IoU 0.44 = the static guess, where fc1 at 0.025 reached 0.50. fc2 at 0.01
  # rather than 0.001: with 0.001, seed 1 stayed on the static guess for 6 epochs and was only
  # +0.041 above it on held-out videos after epoch 8; with 0.01 seeds 0-4 left it in epoch 4-6
  # and were +0.08 to +0.14 above it after epoch 8 (README, "How the demo got here").
  c.model.head_init_stds = (0.025, 0.01)
  # Targets in units the head reaches quickly: centre moves / 8 px and log-size changes / 0.2
  # (the reference's 0.8 px and 0.04 put the targets at 10-30 for the demo's moves, far from
  # the head's start near zero).
  c.model.target_stds = (8.0, 8.0, 0.2, 0.2)
  # Adam (lr 1e-3 at the demo's batch 8), no decay. Measured on seed 0, 240 steps: with
  # SGD at lr 0.2 (batch 32) or Adam with the reference targets, the IoU stayed on the static
  # guess on the version-4 data and on its first drafts; with Adam and these targets it left
  # it at step ~140 on this data and at ~120 on the version-3 data.
  c.optimizer = defaults.sgd_config(lr=0.004, weight_decay=1e-4, decay_epochs=())
  c.optimizer.name = "adam"
  c.train.batch_size = 8
  c.train.epochs = 16
  c.train.steps_per_epoch = 0      # videos // batch
  c.train.backup_every_steps = 0   # epoch-end backups only (an epoch is seconds)
  c.train.log_every_steps = 5
  c.train.keep_checkpoints = 2
  # The pretext on held-out videos (the test split's clips, trajectories fixed by eval_seed),
  # after the middle and the last epoch: what the demo's pretext comparisons use.
  c.train.eval_every_epochs = 8
  c.data.eval_split = "test"
  return c
