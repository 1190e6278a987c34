"""Default ConfigDicts shared by the experiment files in `configs/`.

Every number here is a REFERENCE.md default; experiment files override what they change.
"""

import ml_collections

# The spatial stride of CtP's pretraining backbone: stage 4 keeps its resolution (the paper;
# 16, where stage 4 downsamples too, is the other choice). Every default of it is this one.
BACKBONE_STRIDE = 8


def synthesis_config():
  """CtP trajectory synthesis (REFERENCE.md "Trajectory synthesis"; seed defaults)."""
  c = ml_collections.ConfigDict()
  c.num_trajectories = 3
  c.scales = (16, 24, 28, 32, 48, 64)
  c.ratios = (0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0)
  c.size_jitter = 0.18            # each side x exp(U(-j, j))
  # Probabilities of 0, 1, 2, ... inner key frames (first and last frames are always key frames).
  c.inner_keyframe_probs = (0.0, 1 / 3, 1 / 3, 1 / 3)   # seed: 3 to 5 key frames in all
  c.keyframe_jitter = 1 / 3        # inner key frames move by up to +-(T/(k+1)) * this
  c.speed = 3.0                    # px per frame, per centre coordinate
  c.scale_rate = 0.025             # log size change per frame
  c.interpolation_probs = (1.0, 0.0, 0.0)   # linear, accelerating, decelerating
  c.mask_probs = (0.5, 0.35, 0.15)          # rectangle, ellipse, rhombus
  c.soft_edge_prob = 0.5
  c.soft_edge_range = (0.30, 0.45)
  c.opacity_range = (0.8, 1.0)
  c.visible_prob = 0.8             # 1.0 turns the masked region model off
  c.paste_large_first = True
  # Where the pixel work (patches, colour jitter) runs: "input" (the tf.data map, reference)
  # or "accelerator" (ctp_tf.layers.synthesis_stage inside the train step; same boxes).
  c.placement = "input"
  return c


def public_code_synthesis_config():
  """The PyTorch release's variant: 2 to 4 key frames and a 70/15/15 interpolation mix."""
  c = synthesis_config()
  c.inner_keyframe_probs = (0.5, 0.3, 0.2)
  c.interpolation_probs = (0.7, 0.15, 0.15)
  return c


def pretrain_data_config():
  c = ml_collections.ConfigDict()
  c.split = "train"
  c.clip_len = 16
  c.strides = (1, 2, 3, 4, 5)
  c.temporal_jitter = True
  c.short_sides = (112, 128, 144)
  c.crop_size = 112
  c.flip_prob = 0.5
  c.shuffle_buffer = 256
  # JPEG decoding at 1/2 resolution when frames shrink by >= this factor (0.0: off, exact;
  # 2.0: only where the result is close to exact). See ctp_tf.data.augment.decode_scale_crop.
  c.reduced_decode = 0.0
  # tf.data service dispatcher ("grpc://host:port"; scripts/data_service.py): "" = local.
  c.service_address = ""
  # Per-clip seeds from the position in the stream ("stream") or from (epoch, file, record)
  # ("video": what a tf.data service run uses, whichever worker reads which file).
  c.clip_seeds = "stream"
  return c


def pretrain_augment_config():
  """Colour jitter after the patches are pasted."""
  c = ml_collections.ConfigDict()
  c.hue_sat_prob = 0.25
  c.hue_range = 12.0               # OpenCV hue units (0..180)
  c.saturation_range = 0.1         # x exp(U(-r, r))
  c.brightness_prob = 0.5
  c.brightness_range = 30.0        # + U(-r, r)
  c.contrast_prob = 0.5
  c.contrast_range = 0.12          # x exp(U(-r, r))
  c.dynamic = True                 # key-frame values interpolated over time
  c.dynamic_keyframe_probs = (0.7, 0.3)   # 2 or 3 key frames
  return c


def ctp_model_config():
  c = ml_collections.ConfigDict()
  c.arch = "r3d_18"                # r3d_10/18/34, r2plus1d_10/18/34
  c.width_multiplier = 1.0
  c.backbone_stride = BACKBONE_STRIDE   # 8 (stage 4 keeps resolution) or 16
  c.squeeze = True
  c.roi_size = 5
  c.hidden = 512
  c.target_means = (0.0, 0.0, 0.0, 0.0)
  c.target_stds = (0.8, 0.8, 0.04, 0.04)
  c.bn_epsilon = 1e-3
  c.head_init_stds = (0.001, 0.001)   # N(0, std) for the two head FCs (reference: both 0.001)
  return c


def sgd_config(lr=0.01, weight_decay=1e-4, decay_epochs=(100, 200)):
  c = ml_collections.ConfigDict()
  c.lr = lr
  c.base_batch_size = 32           # lr is scaled linearly from this global batch
  c.momentum = 0.9
  c.weight_decay = weight_decay    # PyTorch style: added to the gradient
  c.clip_norm = 40.0               # global norm
  c.decay_epochs = decay_epochs
  c.decay_factor = 0.1
  return c


def train_config():
  c = ml_collections.ConfigDict()
  c.batch_size = 32                # per replica
  c.epochs = 300
  c.steps_per_epoch = 0            # 0: videos in the split // global batch
  c.seed = 0
  c.mixed_precision = False
  c.jit_compile = False
  c.steps_per_execution = 1
  c.keep_checkpoints = 3
  c.checkpoint_every_epochs = 1
  c.log_images = True
  # Training-loop knobs (ctp_tf.training): 0 = derive / off.
  c.global_batch_size = 0          # if set: must divide by the replicas; overrides batch_size
  c.backup_every_steps = 100       # step backups in WORKDIR/backup (and at every epoch end)
  c.log_every_steps = 10           # TensorBoard batch scalars
  c.image_every_epochs = 1         # TensorBoard box images
  c.verbose = 1                    # Keras progress bar: 1 bar, 2 one line per epoch, 0 off
  c.precision = ""                 # "" (use mixed_precision), "float32", "float16", "bfloat16", "auto"
  # Divergence bound: a training loss above it (or NaN/inf) stops the run as failed; backups
  # from the steps whose weights gave that loss are set aside (`*.diverged`), not resumed from.
  c.max_loss = 1000.0
  return c


def pretrain_config():
  c = ml_collections.ConfigDict()
  c.data = pretrain_data_config()
  c.synthesis = synthesis_config()
  c.augment = pretrain_augment_config()
  c.model = ctp_model_config()
  c.optimizer = sgd_config()
  c.train = train_config()
  # Pretext IoU on held-out videos (`ctp_tf.training.pretext_validation`): every N epochs and
  # after the last (0: off), on `data.eval_split`, clips fixed by `eval_seed`.
  c.train.eval_every_epochs = 0
  c.train.eval_seed = 0
  c.train.eval_max_videos = 0      # 0: the whole split
  c.data.eval_split = "test"
  return c


def finetune_data_config():
  """Action-recognition clips and augmentation (REFERENCE.md "Downstream")."""
  c = ml_collections.ConfigDict()
  c.train_split = "train"
  c.test_split = "test"
  c.clip_len = 16
  c.stride = 2
  c.temporal_jitter = False        # fixed stride 2 from a random start (REFERENCE.md)
  c.reduced_decode = 0.0           # see pretrain_data_config
  c.sizes = ((149, 112), (171, 128), (192, 144))   # (w, h) choices before the random crop
  c.crop_size = 112
  c.flip_prob = 0.35
  c.brightness_prob = 0.2
  c.brightness_range = 32.0
  c.contrast_prob = 0.2
  c.contrast_range = 0.2
  c.hue_sat_prob = 0.2
  c.hue_range = 12.0
  c.saturation_range = 0.1
  c.test_resize = (171, 128)
  c.num_test_clips = 10
  c.shuffle_buffer = 256
  return c


def finetune_config():
  c = ml_collections.ConfigDict()
  c.data = finetune_data_config()
  c.model = ml_collections.ConfigDict()
  c.model.arch = "r3d_18"
  c.model.width_multiplier = 1.0
  c.model.dropout = 0.5
  c.model.bn_epsilon = 1e-3
  c.optimizer = sgd_config(lr=0.01, weight_decay=5e-4, decay_epochs=(60, 120))
  c.train = train_config()
  c.train.epochs = 150
  c.train.eval_every_epochs = 10
  c.train.eval_batch_size = 4      # videos per 10-clip evaluation batch
  return c


# ------------------------------------------------------------------------------- toy sizes
# The same stages in seconds: 8 x 32 x 32 clips, width 1/8, 2 epochs. `configs/tiny.py` and
# `scripts/demo.py --tiny` start from these and set only what they differ in.
TINY_PRETRAIN = {"data.clip_len": 8, "data.short_sides": (32, 36), "data.crop_size": 32,
                 "data.shuffle_buffer": 8, "synthesis.speed": 1.0, "model.width_multiplier": 0.125,
                 "train.epochs": 2, "train.backup_every_steps": 2, "train.log_images": False}
TINY_FINETUNE = {"data.clip_len": 8, "data.crop_size": 32, "data.num_test_clips": 2,
                 "data.shuffle_buffer": 8, "model.width_multiplier": 0.125, "train.epochs": 2,
                 "train.steps_per_epoch": 2, "train.eval_every_epochs": 1}


def tiny_pretrain(c):
  """Shrinks a pretraining config in place to `TINY_PRETRAIN`; returns it."""
  c.update_from_flattened_dict(TINY_PRETRAIN)
  return c


def tiny_finetune(c):
  """Shrinks a finetuning config in place to `TINY_FINETUNE`; returns it."""
  c.update_from_flattened_dict(TINY_FINETUNE)
  return c
