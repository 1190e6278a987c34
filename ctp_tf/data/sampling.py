"""Frame-index samplers for training and test clips (REFERENCE.md "Clip sampling").

Both return int32 index tensors with a static shape, built from TF ops only so they run
inside `tf.data` maps. Randomness is stateless: `seed` is an int32 tensor of shape [2], and the
same seed always gives the same indices.
"""

import tensorflow as tf


def _as_seed(seed):
  return tf.cast(tf.convert_to_tensor(seed), tf.int32)


def train_indices(num_frames, seed, clip_len, strides, temporal_jitter=True):
  """Indices of one training clip: random stride, random start, optional temporal jitter.

  The stride is drawn uniformly from `strides`; the clip spans `clip_len * stride` frames from a
  uniform start in `[0, max(num_frames - span, 0)]`; with `temporal_jitter` each index gets
  `+ U{0..stride-1}`. Indices past the end are clamped to the last frame, so a video shorter
  than the span repeats its last frame (REFERENCE.md).

  Example:
  >>> idx = train_indices(40, [1, 2], clip_len=16, strides=(1, 2, 3))
  >>> idx.shape
  TensorShape([16])

  Args:
    num_frames: int scalar (tensor or Python) frames in the video, >= 1.
    seed: int32 [2] stateless seed.
    clip_len: Python int, frames per clip.
    strides: Python sequence of ints to draw the stride from.
    temporal_jitter: whether each index is jittered within its stride.

  Returns:
    int32 [clip_len].
  """
  strides = [int(s) for s in strides]
  if not strides or min(strides) < 1:
    raise ValueError(f"strides must be a non-empty list of ints >= 1, got {strides}")
  seeds = tf.random.experimental.stateless_split(_as_seed(seed), num=3)
  num_frames = tf.cast(num_frames, tf.int32)
  stride_choice = tf.random.stateless_uniform(
      [], seeds[0], minval=0, maxval=len(strides), dtype=tf.int32)
  stride = tf.gather(tf.constant(strides, tf.int32), stride_choice)
  span = clip_len * stride
  # maxval is exclusive: +1 makes the last valid start reachable.
  max_start = tf.maximum(num_frames - span, 0)
  start = tf.random.stateless_uniform(
      [], seeds[1], minval=0, maxval=max_start + 1, dtype=tf.int32)
  idx = start + tf.range(clip_len, dtype=tf.int32) * stride
  if temporal_jitter:
    # Uniform integer in [0, stride): floor(u * stride) of a float in [0, 1).
    u = tf.random.stateless_uniform([clip_len], seeds[2], dtype=tf.float32)
    jitter = tf.minimum(tf.cast(tf.floor(u * tf.cast(stride, tf.float32)), tf.int32), stride - 1)
    idx = idx + jitter
  return tf.clip_by_value(idx, 0, tf.maximum(num_frames - 1, 0))


def test_indices(num_frames, num_clips, clip_len, stride):
  """Indices of `num_clips` test clips spread uniformly over the video (REFERENCE.md offsets).

  Segment length `L = (num_frames - clip_len * stride + 1) / num_clips`; clip k starts at
  `int(L / 2 + L * k)` (truncation like Python's `int`), then takes every `stride`-th frame.
  For a video shorter than one clip L is negative: starts are clamped to 0 and indices past the
  end to the last frame, so every clip repeats the last frame.

  Example:
  >>> test_indices(100, 10, 16, 2)[:, 0].numpy().tolist()
  [3, 10, 17, 24, 31, 37, 44, 51, 58, 65]

  Returns:
    int32 [num_clips, clip_len].
  """
  num_frames = tf.cast(num_frames, tf.int32)
  # float64 so that starts equal Python's float arithmetic exactly.
  seg = tf.cast(num_frames - clip_len * stride + 1, tf.float64) / float(num_clips)
  k = tf.range(num_clips, dtype=tf.float64)
  starts = tf.cast(seg / 2.0 + seg * k, tf.int32)   # cast truncates toward zero like int()
  starts = tf.maximum(starts, 0)
  idx = starts[:, None] + tf.range(clip_len, dtype=tf.int32)[None, :] * stride
  return tf.clip_by_value(idx, 0, tf.maximum(num_frames - 1, 0))
