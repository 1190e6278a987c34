"""TorchSGD against a hand numpy computation of PyTorch's SGD + mmcv's global-norm clip."""

import numpy as np
import pytest

import keras
from keras import ops

from ctp_tf import defaults
from ctp_tf.training import optimizer as optim


def torch_sgd_numpy(params, grads_seq, lr, momentum, wd, clip):
  """PyTorch semantics: clip_grad_norm_ on raw grads, then d = g + wd p, buf = mu buf + d."""
  params = [p.astype(np.float64).copy() for p in params]
  bufs = [None] * len(params)
  for grads in grads_seq:
    grads = [g.astype(np.float64) for g in grads]
    if clip:
      norm = np.sqrt(sum((g ** 2).sum() for g in grads))
      coef = min(1.0, clip / (norm + 1e-6))
      grads = [g * coef for g in grads]
    for i, (p, g) in enumerate(zip(params, grads)):
      d = g + wd * p
      bufs[i] = d.copy() if bufs[i] is None else momentum * bufs[i] + d
      params[i] = p - lr * bufs[i]
  return params


@pytest.mark.parametrize("clip", [0.0, 40.0, 0.5])
def test_torch_sgd_matches_numpy(clip):
  rng = np.random.default_rng(0)
  p0 = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)]
  grads_seq = [[rng.normal(size=p.shape).astype(np.float32) * 2 for p in p0] for _ in range(4)]
  expect = torch_sgd_numpy(p0, grads_seq, lr=0.1, momentum=0.9, wd=0.05, clip=clip)
  opt = optim.TorchSGD(learning_rate=0.1, momentum=0.9, weight_decay=0.05, clip_norm=clip)
  vs = [keras.Variable(p) for p in p0]
  for grads in grads_seq:
    opt.apply([ops.convert_to_tensor(g) for g in grads], vs)
  for v, e in zip(vs, expect):
    np.testing.assert_allclose(ops.convert_to_numpy(v), e, rtol=1e-5, atol=1e-6)


def test_clip_acts_on_raw_gradient_not_on_decay():
  """With a large weight and a small gradient the decay term dominates; clipping the raw
  gradient (mmcv) leaves it untouched, clipping gradient+decay (wrong) would shrink it."""
  p0 = [np.full((2,), 100.0, np.float32)]
  g = [np.array([0.3, 0.4], np.float32)]      # norm 0.5 < clip 1.0: no clip of the raw grad
  expect = torch_sgd_numpy(p0, [g], lr=0.1, momentum=0.9, wd=0.1, clip=1.0)
  opt = optim.TorchSGD(learning_rate=0.1, momentum=0.9, weight_decay=0.1, clip_norm=1.0)
  v = keras.Variable(p0[0])
  opt.apply([ops.convert_to_tensor(g[0])], [v])
  got = ops.convert_to_numpy(v)
  np.testing.assert_allclose(got, expect[0], rtol=1e-6)
  # 100 - 0.1 * (0.3 + 10): the full decay, not a clipped one.
  np.testing.assert_allclose(got[0], 100 - 0.1 * 10.3, rtol=1e-6)


def test_step_decay_and_linear_scaling():
  cfg = defaults.sgd_config(lr=0.01, decay_epochs=(2, 4))
  opt = optim.make_optimizer(cfg, steps_per_epoch=5, global_batch=64)
  sched = opt._learning_rate   # the schedule object
  lrs = [float(sched(s)) for s in (0, 9, 10, 19, 20, 100)]
  np.testing.assert_allclose(lrs, [0.02, 0.02, 0.002, 0.002, 0.0002, 0.0002], rtol=1e-6)
  assert optim.scaled_learning_rate(cfg, 8) == pytest.approx(0.0025)


def test_optimizer_config_round_trip():
  opt = optim.TorchSGD(learning_rate=optim.StepDecay(0.1, (3,)), momentum=0.8,
                       weight_decay=1e-3, clip_norm=5.0)
  again = optim.TorchSGD.from_config(opt.get_config())
  assert (again.momentum, again.torch_weight_decay, again.clip_norm) == (0.8, 1e-3, 5.0)


def test_adam_option_keeps_the_schedule_and_clipping():
  """`optimizer.name = "adam"` (the demo's pretraining) gives AdamW with the same step decay."""
  import keras
  from ctp_tf import defaults
  from ctp_tf.training import optimizer as optimizer_lib
  c = defaults.sgd_config(lr=0.004, weight_decay=1e-4, decay_epochs=(2,))
  c.name = "adam"
  opt = optimizer_lib.make_optimizer(c, steps_per_epoch=10, global_batch=8)
  assert isinstance(opt, keras.optimizers.AdamW)
  sched = opt._learning_rate   # noqa: SLF001
  assert abs(float(sched(0)) - 0.001) < 1e-9 and abs(float(sched(20)) - 0.0001) < 1e-9
  assert opt.global_clipnorm == c.clip_norm
  c.name = "sgd"
  assert not isinstance(optimizer_lib.make_optimizer(c, 10, 8), keras.optimizers.AdamW)


def test_lr_multipliers_scale_the_step_of_named_variables_only():
  """A variable named in `lr_multipliers` follows the numpy SGD at `factor * lr` (momentum,
  decay and clipping included); the others follow it at `lr`."""
  rng = np.random.default_rng(1)
  p0 = [rng.normal(size=(3,)).astype(np.float32), rng.normal(size=(2,)).astype(np.float32)]
  grads_seq = [[rng.normal(size=p.shape).astype(np.float32) for p in p0] for _ in range(3)]
  vs = [keras.Variable(p0[0], name="slow"), keras.Variable(p0[1], name="fast")]
  opt = optim.TorchSGD(learning_rate=0.1, momentum=0.9, weight_decay=0.01,
                       lr_multipliers={vs[0].path: 0.25})
  for grads in grads_seq:
    opt.apply([ops.convert_to_tensor(g) for g in grads], vs)
  slow = torch_sgd_numpy([p0[0]], [[g[0]] for g in grads_seq], 0.025, 0.9, 0.01, 0.0)[0]
  fast = torch_sgd_numpy([p0[1]], [[g[1]] for g in grads_seq], 0.1, 0.9, 0.01, 0.0)[0]
  np.testing.assert_allclose(ops.convert_to_numpy(vs[0]), slow, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ops.convert_to_numpy(vs[1]), fast, rtol=1e-5, atol=1e-6)
  again = optim.TorchSGD.from_config(opt.get_config())
  assert again.lr_multipliers == {vs[0].path: 0.25}
  with pytest.raises(ValueError, match="does not train"):
    optim.TorchSGD(lr_multipliers={"nope/kernel": 0.5}).build(vs)


def test_finetune_backbone_lr_mult_names_the_encoder_variables():
  from ctp_tf import models
  from ctp_tf.downstream import finetune
  cfg = defaults.finetune_config()
  clf = models.VideoClassifier(models.build_backbone("r3d_10", "standard",
                                                     width_multiplier=0.125), num_classes=3)
  assert finetune.make_optimizer(cfg, clf, 5, 8).lr_multipliers == {}
  cfg.optimizer.backbone_lr_mult = 0.1
  opt = finetune.make_optimizer(cfg, clf, 5, 8)
  assert set(opt.lr_multipliers) == {v.path for v in clf.backbone.trainable_variables}
  assert set(opt.lr_multipliers.values()) == {0.1}
  assert not {"logits/kernel", "logits/bias"} & set(opt.lr_multipliers)
