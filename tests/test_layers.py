"""ROIAlign (both paths, XLA, gradients) against torchvision golden outputs; pooling; imports."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from ctp_tf.layers import AdaptiveAveragePooling3D, Normalize, ROIAlign
from ctp_tf.layers import roi_align as roi_align_module

import golden_inputs   # tests/ is on the path under pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")


def _roi_golden():
  g = np.load(os.path.join(GOLDEN, "roi_align.npz"))
  return np.transpose(g["features"], (0, 2, 3, 1)), g["boxes"], g


@pytest.mark.parametrize("impl", ["matmul", "crop_and_resize"])
def test_roi_align_matches_torchvision(impl):
  features, boxes, g = _roi_golden()
  settings = golden_inputs.ROI_SETTINGS
  for i, (out, scale, samples, aligned) in enumerate(settings):
    y = ROIAlign(out, scale, samples, aligned, impl=impl)(features, boxes)
    expected = np.transpose(g[f"out{i}"], (0, 2, 3, 1))
    np.testing.assert_allclose(np.asarray(y), expected, atol=2e-5, err_msg=f"setting {i}")
  # The golden set really exercises the border rules: some boxes give all zeros (wholly
  # outside) and some are partly zero.
  zero_rows = np.all(g["out0"] == 0, axis=(1, 2, 3))
  assert zero_rows.sum() >= 2 and (~zero_rows).sum() >= 10


def test_roi_align_auto_uses_crop_and_resize_eagerly_and_matmul_under_xla(monkeypatch):
  features, boxes, g = _roi_golden()
  expected = np.transpose(g["out0"], (0, 2, 3, 1))
  layer = ROIAlign(5, 0.25)
  calls = []
  original = ROIAlign._crop_and_resize
  monkeypatch.setattr(ROIAlign, "_crop_and_resize",
                      lambda self, f, r: calls.append(1) or original(self, f, r))
  eager = layer(features, boxes)
  assert calls, "eager TF call should take the crop_and_resize path"
  calls.clear()

  @tf.function(jit_compile=True)
  def xla(f, r):
    assert roi_align_module._in_xla_context()
    return layer(f, r)

  compiled = xla(tf.constant(features), tf.constant(boxes))
  assert not calls, "under jit_compile the layer must not use crop_and_resize"
  np.testing.assert_allclose(compiled.numpy(), np.asarray(eager), atol=2e-5)
  np.testing.assert_allclose(compiled.numpy(), expected, atol=2e-5)

  @tf.function
  def graph(f, r):
    assert not roi_align_module._in_xla_context()
    return layer(f, r)

  graph(tf.constant(features), tf.constant(boxes))
  assert calls, "plain tf.function (no XLA) keeps the fast path"


def test_roi_align_gradients_reach_features_and_agree():
  features, boxes, _ = _roi_golden()
  f = tf.constant(features)
  weights = tf.constant(np.random.default_rng(0).normal(size=(len(boxes), 5, 5, 4)), tf.float32)
  grads = {}
  for impl in ("matmul", "crop_and_resize"):
    with tf.GradientTape() as tape:
      tape.watch(f)
      y = ROIAlign(5, 0.25, impl=impl)(f, boxes)
      loss = tf.reduce_sum(y * weights)
    grads[impl] = tf.convert_to_tensor(tape.gradient(loss, f)).numpy()
  assert np.abs(grads["matmul"]).sum() > 1.0
  np.testing.assert_allclose(grads["matmul"], grads["crop_and_resize"], atol=1e-4)
  # Finite difference on one feature value inside a box.
  eps = 1e-2
  bumped = features.copy()
  bumped[0, 3, 4, 1] += eps
  base = tf.reduce_sum(ROIAlign(5, 0.25, impl="matmul")(features, boxes) * weights)
  plus = tf.reduce_sum(ROIAlign(5, 0.25, impl="matmul")(bumped, boxes) * weights)
  np.testing.assert_allclose((plus - base).numpy() / eps, grads["matmul"][0, 3, 4, 1],
                             rtol=1e-2, atol=1e-3)


def test_roi_align_rejects_adaptive_sampling_and_serialises():
  with pytest.raises(ValueError, match="sampling_ratio"):
    ROIAlign(5, 0.125, sampling_ratio=0)
  layer = ROIAlign((4, 3), 0.125, sampling_ratio=3, aligned=False, impl="matmul")
  clone = ROIAlign.from_config(layer.get_config())
  assert (clone.output_size, clone.spatial_scale, clone.sampling_ratio, clone.aligned,
          clone.impl) == ((4, 3), 0.125, 3, False, "matmul")


def _numpy_adaptive_pool(x, out):
  t, h, w = x.shape[1:4]
  bins = [[(int(np.floor(i * n / m)), int(np.ceil((i + 1) * n / m))) for i in range(m)]
          for n, m in zip((t, h, w), out)]
  y = np.zeros((x.shape[0],) + tuple(out) + (x.shape[-1],), np.float64)
  for a, (t0, t1) in enumerate(bins[0]):
    for b, (h0, h1) in enumerate(bins[1]):
      for c, (w0, w1) in enumerate(bins[2]):
        y[:, a, b, c] = x[:, t0:t1, h0:h1, w0:w1].mean(axis=(1, 2, 3))
  return y


@pytest.mark.parametrize("shape", [(2, 7, 7), (5, 4, 6), (1, 3, 3), (4, 14, 14)])
def test_adaptive_average_pooling_uses_torch_bins(shape):
  x = np.random.default_rng(1).normal(size=(2,) + shape + (3,)).astype(np.float32)
  y = AdaptiveAveragePooling3D((2, 3, 3))(x)
  np.testing.assert_allclose(np.asarray(y), _numpy_adaptive_pool(x, (2, 3, 3)), atol=1e-5)


def test_normalize_uint8_and_float_agree():
  x = np.array([[0, 128, 255]], np.uint8).reshape(1, 1, 1, 3)
  expected = (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(np.asarray(Normalize()(x)), expected, atol=1e-5)
  np.testing.assert_allclose(np.asarray(Normalize()(x.astype(np.float32))), expected, atol=1e-5)


BLOCK_TF = textwrap.dedent("""
  import importlib.abc, sys
  class _BlockTF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
      if name == "tensorflow" or name.startswith("tensorflow."):
        raise ImportError("tensorflow is blocked in this test")
  sys.meta_path.insert(0, _BlockTF())
""")


def test_layers_and_models_import_and_run_without_tensorflow():
  code = BLOCK_TF + textwrap.dedent("""
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax"
    import ctp_tf.layers, ctp_tf.models
    from ctp_tf import defaults
    from ctp_tf.layers import ROIAlign
    y = ROIAlign(2, 0.5)(np.ones((1, 4, 4, 2), "float32"), np.array([[0, 0, 0, 4, 4]], "float32"))
    assert y.shape == (1, 2, 2, 2) and np.allclose(np.asarray(y), 1.0)
    cfg = defaults.ctp_model_config(); cfg.width_multiplier = 0.125; cfg.hidden = 8
    m = ctp_tf.models.build_ctp_model(cfg, clip_shape=(8, 32, 32), num_boxes=1)
    # predict: one jitted program (eager JAX compiles every op separately: slow).
    out = m.predict({"clip": np.zeros((1, 8, 32, 32, 3), "uint8"),
                     "boxes": np.tile(np.array([4., 4., 20., 20.], "float32"), (1, 1, 8, 1))},
                    verbose=0)
    assert out.shape == (1, 1, 8, 4)
    assert "tensorflow" not in sys.modules
    print("OK")
  """)
  env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                     timeout=300, cwd=ROOT)
  assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
