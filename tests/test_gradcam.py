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
