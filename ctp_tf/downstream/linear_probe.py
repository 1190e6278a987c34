"""A linear probe: softmax regression on a frozen encoder's features.

The standard frozen-encoder evaluation of self-supervised features next to the kNN probe:
fit a multinomial logistic regression on the training videos' features, report test top-1.
Full-batch gradient descent on standardised features with an L2 penalty, in numpy: no
randomness, the same answer on every machine up to float rounding.

Example:
>>> import numpy as np
>>> f = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]], "float32")
>>> w, b = fit_softmax_head(f, np.array([1, 0, 1, 0]), num_classes=2)
>>> (f @ w + b).argmax(1).tolist()
[1, 0, 1, 0]
"""

import numpy as np


def fit_softmax_head(features, labels, num_classes, *, l2=1e-3, steps=500, lr=0.5):
  """Softmax regression `[N, C] -> [N, num_classes]`; returns `(kernel [C, K], bias [K])`
  that apply to the raw features (the per-feature standardisation is folded into them)."""
  x = np.asarray(features, np.float64)
  y = np.asarray(labels, np.int64)
  mean, std = x.mean(0), x.std(0) + 1e-6
  z = (x - mean) / std
  onehot = np.eye(num_classes)[y]
  w = np.zeros((x.shape[1], num_classes))
  b = np.zeros(num_classes)
  for _ in range(int(steps)):
    logits = z @ w + b
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    g = (p - onehot) / len(y)
    w -= lr * (z.T @ g + l2 * w)
    b -= lr * g.sum(0)
  kernel = w / std[:, None]
  bias = b - (mean / std) @ w
  return kernel, bias


def probe_top1(train_features, train_labels, test_features, test_labels, num_classes, **fit_kw):
  """Test top-1 of the softmax regression fitted on the training features."""
  kernel, bias = fit_softmax_head(train_features, train_labels, num_classes, **fit_kw)
  pred = (np.asarray(test_features, np.float64) @ kernel + bias).argmax(1)
  return float(np.mean(pred == np.asarray(test_labels)))
