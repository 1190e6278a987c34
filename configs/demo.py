"""The default pretraining config: a small CtP on the embedded demo data, ~5 min on 2 cores.

R3D-10 at width 1/4 on 16 x 64 x 64 clips. The synthesis sizes and speeds are the reference
ones scaled by 64/112 so patches cover the same share of the frame and move the same share of
it per frame. `data_dir` empty means: make and convert the demo data on first use
(`ctp_tf.demo_assets.ensure_demo_data`, cached in ~/.cache/ctp_tf/demo or $CTP_TF_DEMO_DIR).
"""

from ctp_tf import defaults

SCALE = 64 / 112


def get_config():
  c = defaults.pretrain_config()
  c.demo_data = True               # no --data_dir: use (and make) the demo shards
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
  c.model.arch = "r3d_10"
  c.model.width_multiplier = 0.25
  c.model.hidden = 128
  # The reference N(0, 0.001) for both head FCs starts at a saddle that short runs do not
  # leave: on plainly visible trajectories (tests/test_pretrain.py, tiny model, 60 SGD steps)
  # it ended at IoU 0.44 = the static guess, where fc1 at 0.025 reached 0.50.
  c.model.head_init_stds = (0.025, 0.001)
  # Budget: the CtP train step at this size takes ~0.45 s for batch 8 on an idle 2-core
  # machine, so 24 epochs x 24 steps (192 demo videos / 8) is about 4.5 minutes. Twice that
  # (48 epochs, decay at 40; 3 seeds) made the model follow the videos' own object zero-shot
  # and improved retrieval, but finetuning from it ended lower (0.58 against 0.67; README).
  # lr 0.2 at batch 32 (0.05 at the demo's batch 8). At 0.05 (0.0125) the IoU stayed on the
  # static guess for all 480 steps (version-2 data and two version-3 candidates). At 0.2, with
  # the reference patch settings on version-3 data, it left it after about 400 steps in seed 0
  # (0.52 against 0.45 at step 480) and in a development run on another draw of the data, but
  # not in seed 1.
  c.optimizer = defaults.sgd_config(lr=0.2, weight_decay=1e-4, decay_epochs=(20,))
  c.train.batch_size = 8
  c.train.epochs = 24
  c.train.steps_per_epoch = 0      # videos // batch
  c.train.backup_every_steps = 25
  c.train.log_every_steps = 5
  c.train.keep_checkpoints = 2
  return c
