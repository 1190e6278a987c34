"""Shared bits of the pretraining tests: a tiny config and a synthetic batch stream.

The synthetic stream stands in for `pretrain_dataset` where a test is about the training loop
(strategies, resume, NaN) rather than the input pipeline: no JPEG decoding, so it is fast and
exactly reproducible from its seed.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)


def tiny_config(**train_overrides):
  """configs/tiny.py at 8 x 32 x 32 clips, 2 boxes."""
  from ctp_tf.training.config_utils import load_config_file
  c = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
  c.data.clip_len = 8
  c.synthesis.num_trajectories = 2
  c.train.log_images = False
  for k, v in train_overrides.items():
    c.train[k] = v
  return c


def synthetic_dataset_fn(data_dir, config, *, batch_size, seed, num_input_pipelines=1,
                         input_pipeline_id=0):
  """Endless batches {clip, boxes, weights} of squares moving linearly on noise."""
  import tensorflow as tf
  t, s = int(config.data.clip_len), int(config.data.crop_size)
  n = int(config.synthesis.num_trajectories)

  def make(i):
    k = tf.random.experimental.stateless_split(
        tf.stack([tf.cast(seed, tf.int64), i]), 3)
    clip = tf.random.stateless_uniform([batch_size, t, s, s, 3], k[0], 0, 255, tf.int32)
    start = tf.random.stateless_uniform([batch_size, n, 1, 2], k[1], 2.0, s / 2.0)
    vel = tf.random.stateless_uniform([batch_size, n, 1, 2], k[2], -1.0, 1.0)
    xy = start + vel * tf.range(t, dtype=tf.float32)[None, None, :, None]
    boxes = tf.concat([xy, xy + s / 4.0], -1)
    return {"clip": tf.cast(clip, tf.uint8), "boxes": boxes,
            "weights": tf.ones([batch_size, n, t])}

  return tf.data.Dataset.range(2**62).map(make).prefetch(2)


def visible_boxes_dataset_fn(data_dir, config, *, batch_size, seed, num_input_pipelines=1,
                             input_pipeline_id=0):
  """Endless fresh batches whose clips show the trajectories plainly: white boxes on black.

  The control for the pretext task: a model that cannot learn to track these has a bug; one
  that can but does not learn on pasted patches lacks signal or steps.
  """
  import tensorflow as tf
  t, s = int(config.data.clip_len), int(config.data.crop_size)
  n = int(config.synthesis.num_trajectories)

  def make(i):
    k = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), i]), 3)
    size = tf.random.stateless_uniform([batch_size, n, 1, 2], k[0], s * 0.2, s * 0.3)
    start = tf.random.stateless_uniform([batch_size, n, 1, 2], k[1], 0.0, 1.0) * (s - size)
    vel = tf.random.stateless_uniform([batch_size, n, 1, 2], k[2], -1.0, 1.0)
    xy = start + vel * tf.range(t, dtype=tf.float32)[None, None, :, None]
    boxes = tf.round(tf.concat([tf.clip_by_value(xy, 0.0, s - size)] * 2, -1)
                     + tf.concat([tf.zeros_like(size), size], -1))
    px = tf.range(s, dtype=tf.float32) + 0.5
    inside_x = (px >= boxes[..., 0:1]) & (px < boxes[..., 2:3])      # [B, N, T, W]
    inside_y = (px >= boxes[..., 1:2]) & (px < boxes[..., 3:4])      # [B, N, T, H]
    mask = tf.reduce_any(inside_y[..., :, None] & inside_x[..., None, :], axis=1)
    clip = tf.repeat(tf.cast(mask, tf.uint8)[..., None] * 255, 3, -1)
    return {"clip": clip, "boxes": boxes, "weights": tf.ones([batch_size, n, t])}

  return tf.data.Dataset.range(2**62).map(make).prefetch(2)
