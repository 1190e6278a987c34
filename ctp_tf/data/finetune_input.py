"""Action-recognition input pipelines: augmented training clips and 10-clip test videos.

REFERENCE.md "Downstream": train clips of 16 frames at stride 2 from a random start, resized to
one of (w, h) = (149, 112), (171, 128), (192, 144), random 112 crop, flip p 0.35, brightness /
contrast / hue-saturation p 0.2 each; test clips spread uniformly, resized to 171x128, centre 112.
"""

import tensorflow as tf

from ctp_tf.data import augment, color, reader, sampling


def _example_seeds(seed, input_pipeline_id):
  """Dataset of int32 [2] seeds, one per element, from the run seed and the element position.

  Position-based seeds make every clip a pure function of (seed, pipeline, position): a run is
  reproducible and independent of how many parallel calls the map uses.
  """
  base = tf.constant([int(seed) % (2**31), int(input_pipeline_id)], tf.int32)
  return tf.data.Dataset.range(2**62).map(tf.autograph.experimental.do_not_convert(
      lambda i: tf.random.experimental.stateless_fold_in(base, i)))


def train_clip(video, seed, config):
  """One augmented training clip uint8 [T, S, S, 3] from a parsed video dict."""
  seeds = tf.random.experimental.stateless_split(seed, num=5)   # [2] is unused
  indices = sampling.train_indices(
      video["num_frames"], seeds[0], config.clip_len, [config.stride],
      temporal_jitter=config.get("temporal_jitter", False))
  # The JPEG header is the truth about the stored size (cheap: no pixel decoding).
  shape = tf.io.extract_jpeg_shape(video["frames"][0])
  clip = augment.decode_scale_crop(
      video["frames"], indices, seeds[1], height=shape[0], width=shape[1],
      sizes=config.sizes, crop_size=config.crop_size,
      reduced_decode=config.get("reduced_decode", False),
      flip_prob=config.flip_prob)   # flipping inside the resampling grid costs nothing
  clip = color.brightness_contrast(
      clip, seeds[3], brightness_prob=config.brightness_prob,
      brightness_range=config.brightness_range, contrast_prob=config.contrast_prob,
      contrast_range=config.contrast_range, dynamic=False)
  clip = color.hue_saturation(clip, seeds[4], prob=config.hue_sat_prob,
                              hue_range=config.hue_range,
                              saturation_range=config.saturation_range)
  return clip


def finetune_dataset(data_dir, config, *, split="train", batch_size, seed, num_input_pipelines=1,
                     input_pipeline_id=0, repeat=True, options=None):
  """Training batches `(clip uint8 [B, T, S, S, 3], label int32 [B])`, static shapes.

  Example:
  >>> from ctp_tf import defaults
  >>> ds = finetune_dataset("/data/ucf101", defaults.finetune_data_config(), batch_size=8, seed=0)

  Args:
    data_dir: converted dataset directory.
    config: `ctp_tf.defaults.finetune_data_config()` (clip_len, stride, sizes, crop_size,
      flip_prob, brightness_*, contrast_*, hue_sat_prob, hue_range, saturation_range,
      shuffle_buffer; optional temporal_jitter (default False), reduced_decode (default False)).
    split: split to read.
    batch_size: per-pipeline batch; the last partial batch is dropped.
    seed: int; the same seed gives the same batches.
    num_input_pipelines, input_pipeline_id: this host's part of the data.
    repeat: repeat forever.
    options: optional tf.data.Options applied to the result (e.g. thread limits).
  """
  videos = reader.read_videos(
      data_dir, split, shuffle=True, seed=seed, num_shards=num_input_pipelines,
      shard_index=input_pipeline_id, repeat=repeat,
      shuffle_buffer=config.get("shuffle_buffer", 256))
  ds = tf.data.Dataset.zip(videos, _example_seeds(seed, input_pipeline_id))
  # No Python control flow on tensors anywhere below: skipping AutoGraph saves seconds of tracing.
  make = tf.autograph.experimental.do_not_convert(
      lambda v, s: (train_clip(v, s, config), v["label"]))
  ds = ds.map(make,
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  if options is not None:
    ds = ds.with_options(options)
  return ds


def eval_dataset(data_dir, split, *, num_clips, clip_len, stride, resize=(171, 128), crop_size=112,
                 batch_size, num_input_pipelines=1, input_pipeline_id=0):
  """Test videos as `{"clips": uint8 [B, num_clips, T, crop, crop, 3], "label", "video_index"}`.

  Deterministic order (shards in name order, interleaved), one pass, the last batch may be
  partial. `video_index` identifies each video whatever the read order.
  """
  videos = reader.read_videos(data_dir, split, shuffle=False, seed=0,
                              num_shards=num_input_pipelines, shard_index=input_pipeline_id,
                              repeat=False)

  def to_clips(v):
    indices = sampling.test_indices(v["num_frames"], num_clips, clip_len, stride)
    clips = augment.decode_center(v["frames"], indices, resize=resize, crop_size=crop_size)
    return {"clips": clips, "label": v["label"], "video_index": v["video_index"]}

  ds = videos.map(tf.autograph.experimental.do_not_convert(to_clips),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
