"""CtP targets/losses/decoding against numpy written from REFERENCE.md; fit; TF vs JAX."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctp_tf import defaults
from ctp_tf.models import (CtPModel, FeatureExtractor, VideoClassifier, box_iou, build_backbone,
                           build_ctp_model, ctp_losses, ctp_targets, decode_boxes)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STDS = (0.8, 0.8, 0.04, 0.04)


# --- numpy reference, written from REFERENCE.md "Network for pretraining" ------------------

def np_targets(boxes, means=(0, 0, 0, 0), stds=STDS):
  out = np.zeros(boxes.shape, np.float64)
  for idx in np.ndindex(boxes.shape[:-2]):
    b = boxes[idx].astype(np.float64)
    x1, y1, x2, y2 = b[0]
    w0, h0 = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    for t in range(b.shape[0]):
      a1, b1, a2, b2 = b[t]
      w, h = max(a2 - a1, 1.0), max(b2 - b1, 1.0)
      d = [(a1 + a2) / 2 - (x1 + x2) / 2, (b1 + b2) / 2 - (y1 + y2) / 2,
           np.log(w) - np.log(w0), np.log(h) - np.log(h0)]
      out[idx + (t,)] = [(d[i] - means[i]) / stds[i] for i in range(4)]
  return out


def np_losses(pred, target, weights):
  diff = np.abs(pred - target)
  sl1 = np.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5)
  norm = max(1.0, weights.sum())
  return ((sl1[..., :2] * weights[..., None]).sum() / norm,
          (sl1[..., 2:] * weights[..., None]).sum() / norm)


def np_iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
  return iw * ih / union if union > 0 else 0.0


def moving_boxes(rng, batch, n, t, size=32):
  """Boxes that drift and grow (static IoU well below 1) inside a size x size frame."""
  start = rng.uniform(0, size / 2, (batch, n, 1, 2))
  wh = rng.uniform(6, 10, (batch, n, 1, 2))
  step = rng.uniform(-1.0, 1.5, (batch, n, 1, 2))
  grow = rng.uniform(0.0, 0.4, (batch, n, 1, 2))
  k = np.arange(t)[None, None, :, None]
  xy = start + step * k
  return np.concatenate([xy, xy + wh + grow * k], -1).astype(np.float32)


def test_targets_losses_decode_match_numpy():
  rng = np.random.default_rng(0)
  boxes = moving_boxes(rng, 2, 3, 6)
  boxes[0, 0, 2] = [5, 5, 5.5, 5.2]          # degenerate box: sizes clamp to 1
  weights = rng.integers(0, 2, (2, 3, 6)).astype(np.float32)
  pred = rng.normal(0, 2, (2, 3, 6, 4)).astype(np.float32)
  means = (0.1, -0.2, 0.01, 0.0)
  np.testing.assert_allclose(np.asarray(ctp_targets(boxes, means, STDS)),
                             np_targets(boxes, means), rtol=1e-4, atol=1e-4)
  target = np_targets(boxes)
  ctr, size = ctp_losses(pred, target.astype(np.float32), weights)
  ref_ctr, ref_size = np_losses(pred, target, weights)
  np.testing.assert_allclose([float(ctr), float(size)], [ref_ctr, ref_size], rtol=1e-5)
  # No weights: normalised by max(1, 0) = 1, i.e. zero loss.
  ctr0, _ = ctp_losses(pred, target.astype(np.float32), np.zeros_like(weights))
  assert float(ctr0) == 0.0
  # Decoding inverts the targets (for boxes at least 1 pixel wide).
  good = np.array(boxes)
  good[0, 0, 2] = [5, 5, 7, 8]
  decoded = decode_boxes(ctp_targets(good, means, STDS), good[:, :, 0], means, STDS)
  np.testing.assert_allclose(np.asarray(decoded), good, atol=1e-3)
  # Decode against a hand calculation: centre moves by d*std, size scales by exp(d*std).
  d = np.array([[[1.0, -0.5, 2.0, 0.0]]], np.float32)
  box = decode_boxes(d[None], np.array([[[10, 20, 30, 60]]], np.float32))
  w = 20 * np.exp(0.08)
  np.testing.assert_allclose(np.asarray(box)[0, 0, 0],
                             [20.8 - w / 2, 39.6 - 20, 20.8 + w / 2, 39.6 + 20], rtol=1e-5)
  a, b = boxes[1, 1, 0], boxes[1, 1, 3]
  assert abs(float(box_iou(a, b)) - np_iou(a, b)) < 1e-6
  assert float(box_iou(np.array([0, 0, 1, 1.]), np.array([2, 2, 3, 3.]))) == 0.0


def tiny_config(**overrides):
  cfg = defaults.ctp_model_config()
  cfg.width_multiplier = 0.125
  cfg.hidden = 32
  cfg.update(overrides)
  return cfg


def one_batch(seed=0, batch=2, n=2, t=8):
  rng = np.random.default_rng(seed)
  boxes = moving_boxes(rng, batch, n, t)
  clip = rng.integers(0, 255, (batch, t, 32, 32, 3)).astype(np.uint8)
  return {"clip": clip, "boxes": boxes, "weights": np.ones((batch, n, t), np.float32)}


def test_tiny_ctp_model_overfits_one_batch_with_fit():
  keras.utils.set_random_seed(0)
  model = build_ctp_model(tiny_config(arch="r3d_10"), clip_shape=(8, 32, 32), num_boxes=2)
  # jit_compile: the TF CPU kernels for Conv3D filter gradients are ~10x slower than XLA's
  # here, and it checks that ROIAlign takes its XLA-safe path inside `fit`.
  model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=True)
  batch = one_batch()
  ds = tf.data.Dataset.from_tensors(batch).repeat()
  history = model.fit(ds, epochs=3, steps_per_epoch=8, verbose=0).history
  assert set(history) >= {"loss", "loss_ctr", "loss_size", "iou", "iou_static"}
  assert history["loss"][-1] < 0.6 * history["loss"][0], history
  np.testing.assert_allclose(np.array(history["loss"]),
                             np.array(history["loss_ctr"]) + np.array(history["loss_size"]),
                             rtol=1e-4)
  result = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
  assert result["iou"] > result["iou_static"] + 0.1, result
  # iou_static is what keeping the frame-0 box scores: check it by hand.
  b = batch["boxes"]
  static = np.mean([np_iou(b[i, j, 0], b[i, j, t]) for i in range(2) for j in range(2)
                    for t in range(1, 8)])
  assert abs(result["iou_static"] - static) < 1e-4


def test_no_squeeze_head_and_round_trip(tmp_path):
  model = build_ctp_model(tiny_config(squeeze=False), clip_shape=(16, 32, 32), num_boxes=3)
  assert model.feature_frames == 2
  assert model.fc1.kernel.shape[0] == 5 * 5 * 64 * 2       # ROIAlign on both time steps
  assert model.temporal_conv.kernel.shape[:3] == (1, 1, 1)
  squeezed = build_ctp_model(tiny_config(), clip_shape=(16, 32, 32), num_boxes=3)
  assert squeezed.temporal_conv.kernel.shape[:3] == (2, 1, 1)
  batch = one_batch(t=16, n=3)
  x = {"clip": batch["clip"], "boxes": batch["boxes"]}
  before = np.asarray(model(x))
  assert before.shape == (2, 3, 16, 4)
  path = str(tmp_path / "ctp.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert isinstance(loaded, CtPModel) and not loaded.squeeze
  np.testing.assert_allclose(np.asarray(loaded(x)), before, atol=1e-5)


def test_head_init_stds():
  """Reference N(0, 0.001) for both head FCs by default; a config can widen fc1 alone."""
  ref = build_ctp_model(tiny_config(hidden=128), clip_shape=(8, 32, 32), num_boxes=2)
  wide = build_ctp_model(tiny_config(hidden=128, head_init_stds=(0.05, 0.001)),
                         clip_shape=(8, 32, 32), num_boxes=2)
  # Sample stds of 4096+ unseeded draws: within 10% is > 9 standard errors.
  for model, fc1_std in ((ref, 0.001), (wide, 0.05)):
    k1, k2 = np.asarray(model.fc1.kernel), np.asarray(model.fc2.kernel)
    assert abs(k1.std() - fc1_std) < 0.1 * fc1_std and abs(k2.std() - 0.001) < 1e-4
  assert wide.get_config()["head_init_stds"] == [0.05, 0.001]


def test_classifier_and_features(tmp_path):
  backbone = build_backbone("r3d_10", width_multiplier=0.125)
  clf = VideoClassifier(backbone, num_classes=7)
  clip = np.random.default_rng(1).integers(0, 255, (2, 16, 32, 32, 3)).astype(np.uint8)
  logits = np.asarray(clf(clip))
  assert logits.shape == (2, 7)
  kernel = np.asarray(clf.get_layer("logits").kernel)
  assert 0.0005 < kernel.std() < 0.002                     # N(0, 0.001)
  assert clf.get_layer("dropout").rate == 0.5
  fx = FeatureExtractor(backbone, clip_shape=(16, 112, 112))
  big = np.random.default_rng(2).integers(0, 255, (1, 16, 112, 112, 3)).astype(np.uint8)
  out = fx(big)
  maps = np.asarray(backbone(big))                          # [1, 2, 7, 7, 64]
  assert maps.shape == (1, 2, 7, 7, 64)
  np.testing.assert_allclose(np.asarray(out["features"]), maps.mean(axis=(1, 2, 3)), atol=1e-5)
  # 7 -> 3 adaptive bins (PyTorch): [0,3), [2,5), [4,7); flattened (t, h, w, c).
  bins = [(0, 3), (2, 5), (4, 7)]
  grid = np.stack([np.stack([maps[0, :, a:b, c:d].mean(axis=(1, 2)) for c, d in bins], 1)
                   for a, b in bins], 1)                    # [t, h, w, C]
  np.testing.assert_allclose(np.asarray(out["retrieval_features"])[0], grid.reshape(-1),
                             atol=1e-5)
  for model, x in ((clf, clip), (fx, big)):
    path = str(tmp_path / f"{model.name}.keras")
    model.save(path)
    again = keras.models.load_model(path)
    y0, y1 = model(x), again(x)
    for a, b in zip(keras.tree.flatten(y0), keras.tree.flatten(y1)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


JAX_SCRIPT = textwrap.dedent("""
  import json, sys
  import numpy as np
  import keras
  import ctp_tf.models  # registers the classes
  from ctp_tf.layers import ROIAlign
  work = sys.argv[1]
  data = dict(np.load(work + "/inputs.npz"))
  names = json.load(open(work + "/models.json"))
  outputs = {}
  for name, keys in names.items():
    model = keras.models.load_model(f"{work}/{name}.keras")
    x = {k: data[k] for k in keys} if len(keys) > 1 else data[keys[0]]
    y = model.predict(x, verbose=0)
    for i, a in enumerate(keras.tree.flatten(y)):
      outputs[f"{name}/{i}"] = np.asarray(a)
  outputs["roi"] = np.asarray(ROIAlign(5, 0.25)(data["features"], data["rois"]))
  # fit on JAX: metrics updated inside compute_loss must work statelessly.
  from ctp_tf import defaults
  keras.utils.set_random_seed(0)
  cfg = defaults.ctp_model_config(); cfg.width_multiplier = 0.125; cfg.hidden = 32
  m = ctp_tf.models.build_ctp_model(cfg, clip_shape=(8, 32, 32), num_boxes=2)
  m.compile(optimizer=keras.optimizers.Adam(3e-3))
  batch = {k: data["fit_" + k] for k in ("clip", "boxes", "weights")}
  h = m.fit(batch, batch_size=2, epochs=24, verbose=0).history
  np.savez(work + "/jax_outputs.npz", **outputs)
  json.dump(h, open(work + "/jax_history.json", "w"))
""")


def test_tf_and_jax_backends_agree(tmp_path):
  work = str(tmp_path)
  rng = np.random.default_rng(3)
  batch = one_batch(seed=5)
  fit = one_batch(seed=6)
  inputs = {"clip": batch["clip"], "boxes": batch["boxes"],
            "features": rng.normal(size=(2, 8, 8, 3)).astype(np.float32),
            "rois": np.array([[0, -3, 2, 20, 30], [1, 10, 10, 40, 28]], np.float32)}
  inputs.update({"fit_" + k: v for k, v in fit.items()})
  np.savez(work + "/inputs.npz", **inputs)
  keras.utils.set_random_seed(1)
  models = {
      "ctp": (build_ctp_model(tiny_config(arch="r3d_10"), clip_shape=(8, 32, 32), num_boxes=2),
              ["clip", "boxes"]),
      "r2p1d": (build_backbone("r2plus1d_10", "pretrain", width_multiplier=0.125), ["clip"]),
      "clf": (VideoClassifier(build_backbone("r3d_10", width_multiplier=0.125), 4), ["clip"]),
      "fx": (FeatureExtractor(build_backbone("r2plus1d_10", width_multiplier=0.125,
                                             input_shape=(8, 32, 32, 3))), ["clip"]),
  }
  expected = {}
  for name, (model, keys) in models.items():
    # Non-trivial BN statistics so that inference-mode BN is really compared.
    for layer in model._flatten_layers():
      if isinstance(layer, keras.layers.BatchNormalization):
        c = layer.moving_mean.shape[0]
        layer.moving_mean.assign(rng.normal(0, 0.1, c))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, c))
    model.save(f"{work}/{name}.keras")
    x = {k: inputs[k] for k in keys} if len(keys) > 1 else inputs[keys[0]]
    for i, a in enumerate(keras.tree.flatten(model.predict(x, verbose=0))):
      expected[f"{name}/{i}"] = np.asarray(a)
  json.dump({k: v[1] for k, v in models.items()}, open(work + "/models.json", "w"))
  env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  r = subprocess.run([sys.executable, "-c", JAX_SCRIPT, work], env=env, capture_output=True,
                     text=True, timeout=600, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  got = np.load(work + "/jax_outputs.npz")
  for key, value in expected.items():
    scale = max(1.0, float(np.abs(value).max()))
    np.testing.assert_allclose(got[key], value, atol=1e-4 * scale, err_msg=key)
  from ctp_tf.layers import ROIAlign
  np.testing.assert_allclose(got["roi"], np.asarray(ROIAlign(5, 0.25)(inputs["features"],
                                                                      inputs["rois"])),
                             atol=1e-5)
  history = json.load(open(work + "/jax_history.json"))
  assert history["loss"][-1] < 0.6 * history["loss"][0], history
  assert history["iou"][-1] > history["iou_static"][-1], history
