"""Shared bits of the pretraining tests: a tiny config and a synthetic batch stream.

The synthetic stream stands in for `pretrain_dataset` where a test is about the training loop
(strategies, resume, NaN) rather than the input pipeline: no JPEG decoding, so it is fast and
exactly reproducible from its seed.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**train_overrides):
  """configs/tiny.py (8 x 32 x 32 clips, 2 boxes) with `train` fields overridden."""
  from ctp_tf.training.config_utils import load_config_file
  c = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
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


def model_state(model):
  """(model weights, optimizer variables) as numpy lists, in Keras' own orders."""
  import keras
  return ([keras.ops.convert_to_numpy(v) for v in model.weights],
          [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables])


def backup_arrays(path):
  """(model arrays, optimizer arrays) of a `.weights.h5` backup, read with h5py (not Keras):
  optimizer arrays in `optimizer/vars/<i>` order (i = position in optimizer.variables)."""
  import h5py
  model, opt = [], {}
  with h5py.File(path, "r") as f:
    def visit(name, obj):
      if isinstance(obj, h5py.Dataset):
        parts = name.split("/")
        if parts[0] == "optimizer":
          opt[int(parts[-1])] = obj[()]
        else:
          model.append(obj[()])
    f.visititems(visit)
  return model, [opt[i] for i in range(len(opt))]


def assert_state_equals_backup(weights, opt_vars, backup_path, step):
  """Restored state == backup, tensor by tensor: every optimizer variable (step counter,
  momentum slots) at its index, and the model weights one to one (each equal to a distinct
  backup tensor: the h5 layout names layers by attribute, not by weight path)."""
  import numpy as np
  want_model, want_opt = backup_arrays(backup_path)
  assert len(opt_vars) == len(want_opt) > 1
  for i, (got, want) in enumerate(zip(opt_vars, want_opt)):
    np.testing.assert_array_equal(got, want, err_msg=f"optimizer variable {i}")
  assert int(opt_vars[0]) == step                  # the iteration counter comes first
  assert any(np.abs(v).max() > 0 for v in want_opt[1:] if v.size)   # momentum really saved
  assert len(weights) == len(want_model)
  unused = list(range(len(want_model)))
  for j, got in enumerate(weights):
    match = next((i for i in unused if want_model[i].shape == got.shape
                  and np.array_equal(want_model[i], got)), None)
    assert match is not None, f"model weight {j} {got.shape} equals no tensor of the backup"
    unused.remove(match)
