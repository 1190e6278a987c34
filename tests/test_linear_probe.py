"""The frozen-encoder linear probe: softmax regression with the standardisation folded in."""

import numpy as np

from ctp_tf.downstream import linear_probe


def _blobs(n_per_class, centres, spread, seed):
  rng = np.random.default_rng(seed)
  x = np.concatenate([c + spread * rng.normal(size=(n_per_class, len(c))) for c in centres])
  y = np.repeat(np.arange(len(centres)), n_per_class)
  return x, y


def test_separates_classes_on_raw_features_with_large_offsets():
  """Features like pooled ReLU outputs: a large common offset, scale differing per feature,
  the class in small deviations. The folded kernel/bias must classify the raw features as the
  fitted model classifies the standardised ones."""
  centres = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) * [0.1, 0.02, 1.0]
  centres = centres + [50.0, -3.0, 7.0]
  x, y = _blobs(40, centres, np.array([0.01, 0.002, 0.1]), 0)
  xt, yt = _blobs(40, centres, np.array([0.01, 0.002, 0.1]), 1)
  assert linear_probe.probe_top1(x, y, xt, yt, 3) > 0.95
  kernel, bias = linear_probe.fit_softmax_head(x, y, 3)
  mean, std = x.mean(0), x.std(0) + 1e-6
  # The same logits from standardised features and the unfolded weights.
  w = kernel * std[:, None]
  b = bias + (mean / std) @ w
  np.testing.assert_allclose(x @ kernel + bias, ((x - mean) / std) @ w + b, rtol=1e-6,
                             atol=1e-6)


def test_deterministic_and_chance_on_noise():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(200, 16)), rng.integers(0, 4, 200)
  xt, yt = rng.normal(size=(400, 16)), rng.integers(0, 4, 400)
  a = linear_probe.fit_softmax_head(x, y, 4)
  b = linear_probe.fit_softmax_head(x, y, 4)
  np.testing.assert_array_equal(a[0], b[0])
  assert abs(linear_probe.probe_top1(x, y, xt, yt, 4) - 0.25) < 0.08


def test_l2_shrinks_the_kernel():
  x, y = _blobs(20, np.eye(3) * 3, 1.0, 0)
  small = linear_probe.fit_softmax_head(x, y, 3, l2=1e-3)[0]
  large = linear_probe.fit_softmax_head(x, y, 3, l2=1.0)[0]
  assert np.abs(large).sum() < 0.5 * np.abs(small).sum()
