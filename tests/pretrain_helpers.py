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
