"""Guided Grad-CAM on a tiny classifier: shapes, ranges, the guided ReLU, files written."""

import os

import numpy as np
import pytest

from ctp_tf import models
from ctp_tf.downstream import gradcam


@pytest.fixture(scope="module")
def classifier():
  import keras
  keras.utils.set_random_seed(4)
  backbone = models.build_backbone("r3d_10", "standard", width_multiplier=0.125)
  return models.VideoClassifier(backbone, 3)


def test_guided_grad_cam_maps(classifier, tmp_path):
  import tensorflow as tf
  clip = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
  maps = gradcam.guided_grad_cam(classifier, clip)
  logits = np.asarray(classifier(clip[None], training=False))[0]
  # The split into backbone + Dense head reproduces the classifier's logits.
  np.testing.assert_allclose(maps["logits"], logits, rtol=1e-5, atol=1e-6)
  assert maps["class_index"] == int(np.argmax(logits))
  assert maps["cam"].shape == (8, 32, 32) and maps["guided"].shape == (8, 32, 32, 3)
  assert 0.0 <= maps["cam"].min() and maps["cam"].max() == pytest.approx(1.0)
  import keras
  relus = [l for l in classifier.backbone.layers if isinstance(l, keras.layers.ReLU)]
  assert maps["guided_relus"] == len(relus) == 9   # R3D-10: stem + 4 blocks x 2, all swapped
  np.testing.assert_allclose(maps["guided_cam"], maps["guided"] * maps["cam"][..., None])

  # Guided backprop differs from plain input gradients (negative gradients are gated).
  x = tf.convert_to_tensor(clip[None].astype(np.float32))
  with tf.GradientTape() as tape:
    tape.watch(x)
    score = classifier(x, training=False)[0, maps["class_index"]]
  plain = tape.gradient(score, x)[0].numpy()
  assert np.abs(plain).max() > 0 and np.abs(maps["guided"]).max() > 0
  assert not np.allclose(plain, maps["guided"])

  # Another class gives another map.
  other = gradcam.guided_grad_cam(classifier, clip, class_index=(maps["class_index"] + 1) % 3)
  assert other["class_index"] != maps["class_index"]

  png, gif = str(tmp_path / "cam.png"), str(tmp_path / "cam.gif")
  gradcam.save_visualisation(clip, maps, png, gif, title="test")
  assert os.path.getsize(png) > 5000 and os.path.getsize(gif) > 1000
  from PIL import Image
  with Image.open(gif) as im:
    assert im.n_frames == 8 and im.size == (96, 32)


def test_gradcam_rejects_non_classifier():
  backbone = models.build_backbone("r3d_10", "standard", width_multiplier=0.125)
  with pytest.raises(ValueError, match="VideoClassifier"):
    gradcam.guided_grad_cam(backbone, np.zeros((8, 32, 32, 3), np.uint8))


def _known_map_classifier(t=4, h=16, w=16):
  """A classifier whose correct Grad-CAM is known.

  Backbone: a fixed 1x1x1 conv (each of 2 channels = the pixel's mean grey level / 255) ->
  channel 0 kept on the left half, channel 1 on the right half -> ReLU -> 2x4x4 average pool.
  Head: class 0 = channel 0 - channel 1, class 1 = the reverse. So class 0's evidence lies in
  the left half (its map there is the frame brightness, 0 on the right), class 1's on the right.
  """
  import keras

  class HalfMask(keras.layers.Layer):
    def call(self, x):
      left = keras.ops.cast(keras.ops.arange(w) < w // 2, x.dtype)[:, None]
      mask = keras.ops.concatenate([left, 1.0 - left], axis=-1)       # [W, 2]
      return x * mask

  inputs = keras.Input((t, h, w, 3))
  conv = keras.layers.Conv3D(2, 1, use_bias=False, name="conv")
  x = keras.layers.ReLU(name="relu")(HalfMask(name="half_mask")(conv(inputs)))
  x = keras.layers.AveragePooling3D((2, 4, 4), name="pool")(x)
  backbone = keras.Model(inputs, x, name="tiny_backbone")
  conv.set_weights([np.full((1, 1, 1, 3, 2), 1.0 / (3 * 255.0), np.float32)])

  class Classifier(keras.Model):
    def __init__(self):
      super().__init__()
      self.backbone = backbone
      self.head = keras.layers.Dense(2, name="logits")

    def call(self, x, training=False):
      return self.head(keras.ops.mean(self.backbone(x, training=training), axis=(1, 2, 3)))

  model = Classifier()
  model(np.zeros((1, t, h, w, 3), np.float32))
  model.head.set_weights([np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32),
                          np.zeros(2, np.float32)])
  return model


def test_grad_cam_finds_the_half_the_class_looks_at():
  t, h, w = 4, 16, 16
  model = _known_map_classifier(t, h, w)
  brightness = np.array([60, 120, 180, 240], np.float32)                 # per frame
  clip = np.broadcast_to(brightness[:, None, None, None], (t, h, w, 3)).astype(np.uint8)
  # The known map. Feature map [2, 4, 4]: frames pooled in pairs (brightness 90, 210), columns
  # 0-1 hold class 0's evidence, 2-3 class 1's. Linear upsampling with half-pixel centres:
  # in time 2 -> 4 frames gives 90, 120, 180, 210; in space 4 -> 16 columns gives
  # 1 (columns 0-5), 0.875, 0.625, 0.375, 0.125, then 0 (columns 10-15) for class 0.
  time_profile = np.array([90, 120, 180, 210]) / 210.0
  left = np.array([1.0] * 6 + [0.875, 0.625, 0.375, 0.125] + [0.0] * 6)
  for cls in (0, 1):
    maps = gradcam.guided_grad_cam(model, clip, class_index=cls)
    np.testing.assert_allclose(maps["logits"], [0.0, 0.0], atol=1e-6)   # both halves equal
    assert maps["class_index"] == cls and maps["guided_relus"] == 1
    columns = left if cls == 0 else left[::-1]
    want = np.broadcast_to(time_profile[:, None, None] * columns[None, None, :], (t, h, w))
    np.testing.assert_allclose(maps["cam"], want, rtol=1e-5, atol=1e-6)
    # Guided backprop: d score / d pixel = +-1 / (3 * 255 * T * H * W) through the conv, the
    # pool and the mean; the guided ReLU passes only the positive half (the class's own side).
    g = maps["guided"]
    unit = 1.0 / (3 * 255.0 * t * h * w)
    own = g[:, :, :w // 2] if cls == 0 else g[:, :, w // 2:]
    other = g[:, :, w // 2:] if cls == 0 else g[:, :, :w // 2]
    np.testing.assert_allclose(own, unit, rtol=1e-4)
    np.testing.assert_allclose(other, 0.0, atol=1e-12)
