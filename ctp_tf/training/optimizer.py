"""SGD as PyTorch/mmcv run it, the step learning-rate schedule and linear LR scaling.

PyTorch's `SGD(weight_decay=wd)` couples the decay with momentum: the decay term is added to
the gradient before the momentum buffer (`d = g + wd * p; buf = mu * buf + d; p -= lr * buf`),
on every parameter, BatchNorm scales and biases included. mmcv clips the raw gradient by its
global norm first (`clip_grad_norm_` runs before `optimizer.step()`). Keras' own `weight_decay`
is decoupled (AdamW-style) and its `global_clipnorm` runs per replica before the cross-replica
sum on the TF backend, so neither matches; `TorchSGD` does both the PyTorch way.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ctp_tf")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
  """`lr * factor ** (number of boundaries <= step)`: PyTorch's MultiStepLR, stepped per epoch.

  `boundaries` are optimizer steps (epoch milestones x steps per epoch): the step at index
  `boundaries[0]` is the first one trained with the decayed rate.

  Example:
    >>> s = StepDecay(0.1, boundaries=(10, 20), factor=0.1)
    >>> [round(float(s(i)), 6) for i in (0, 9, 10, 19, 20)]
    [0.1, 0.1, 0.01, 0.01, 0.001]
  """

  def __init__(self, initial_learning_rate, boundaries=(), factor=0.1):
    self.initial_learning_rate = float(initial_learning_rate)
    self.boundaries = tuple(int(b) for b in boundaries)
    self.factor = float(factor)

  def __call__(self, step):
    step = ops.cast(step, "int64")
    passed = ops.zeros((), "float32")
    for b in self.boundaries:
      passed = passed + ops.cast(ops.greater_equal(step, b), "float32")
    return self.initial_learning_rate * ops.power(self.factor, passed)

  def get_config(self):
    return {"initial_learning_rate": self.initial_learning_rate,
            "boundaries": list(self.boundaries), "factor": self.factor}


def _global_norm_clip(grads, clip_norm):
  """Scales all gradients by min(1, clip / global_norm), as torch.nn.utils.clip_grad_norm_."""
  present = [g for g in grads if g is not None]
  if not present:
    return grads
  norm = ops.sqrt(sum(ops.sum(ops.square(ops.cast(g, "float32"))) for g in present))
  # torch adds 1e-6 to the norm in the divisor.
  scale = ops.minimum(1.0, clip_norm / (norm + 1e-6))
  return [None if g is None else g * ops.cast(scale, g.dtype) for g in grads]


def _tf_replica_count():
  """Replicas of the current tf.distribute replica context (1 outside one or off TF)."""
  if keras.backend.backend() != "tensorflow":
    return 1
  import tensorflow as tf
  ctx = tf.distribute.get_replica_context()
  if ctx is None:
    return 1
  return ctx.num_replicas_in_sync


@keras.saving.register_keras_serializable(package="ctp_tf")
class TorchSGD(keras.optimizers.Optimizer):
  """SGD with PyTorch-style (coupled) weight decay and global-norm clipping of the raw gradient.

  Update per variable `p` with gradient `g` (after clipping all gradients together):
  `d = g + weight_decay * p; buf = momentum * buf + d; p -= lr * buf`. With
  several replicas on the TF backend the gradients are summed across replicas first and the
  global norm is taken of that sum (the mean gradient, as under PyTorch DDP), not per replica.

  Args:
    learning_rate: float or schedule.
    momentum: momentum factor (no dampening, no Nesterov, as the CtP release).
    weight_decay: L2 factor added to the gradient (all trainable variables).
    clip_norm: global-norm threshold applied to the raw gradient; 0 or None disables.
    lr_multipliers: optional `{variable.path: factor}`; those variables step at
      `factor * learning_rate` (mmcv's `paramwise_cfg` `lr_mult`: e.g. a pretrained backbone
      that moves slower than a fresh head). Weight decay and momentum are as for the others.

  Example:
    >>> opt = TorchSGD(learning_rate=0.1, momentum=0.9, weight_decay=1e-4, clip_norm=40.0)
    >>> v = keras.Variable([1.0, -2.0])
    >>> opt.apply([ops.convert_to_tensor([0.5, 0.5])], [v])
    >>> [round(float(x), 5) for x in ops.convert_to_numpy(v)]
    [0.94999, -2.04998]
  """

  def __init__(self, learning_rate=0.01, momentum=0.9, weight_decay=0.0, clip_norm=None,
               lr_multipliers=None, name="torch_sgd", **kwargs):
    kwargs.pop("global_clipnorm", None)
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.momentum = float(momentum)
    # Not Keras' `weight_decay` (decoupled): ours is added to the gradient in update_step.
    self.torch_weight_decay = float(weight_decay)
    self.clip_norm = float(clip_norm) if clip_norm else 0.0
    self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]
    unknown = set(self.lr_multipliers) - {v.path for v in variables}
    if unknown:
      raise ValueError(f"lr_multipliers name variables the optimizer does not train: "
                       f"{sorted(unknown)[:3]}")
    self._lr_factors = [self.lr_multipliers.get(v.path, 1.0) for v in variables]

  def _clip_gradients(self, grads):
    # Under several TF replicas the clip happens after the all-reduce (_backend_update_step).
    if not self.clip_norm or _tf_replica_count() > 1:
      return grads
    return _global_norm_clip(grads, self.clip_norm)

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    if self.clip_norm and _tf_replica_count() > 1:
      import tensorflow as tf
      from keras.src import backend as ksb
      tvars = [v.value if isinstance(v, ksb.Variable) else v for v in trainable_variables]
      pairs = self._all_reduce_sum_gradients(list(zip(grads, tvars)))
      clipped = _global_norm_clip([g for g, _ in pairs], self.clip_norm)
      tf.__internal__.distribute.interim.maybe_merge_call(
          self._distributed_tf_update_step, self._distribution_strategy,
          list(zip(clipped, [v for _, v in pairs])), learning_rate)
      return
    super()._backend_update_step(grads, trainable_variables, learning_rate)

  def update_step(self, gradient, variable, learning_rate):
    index = self._get_variable_index(variable)
    lr = ops.cast(learning_rate, variable.dtype)
    if self._lr_factors[index] != 1.0:
      lr = lr * self._lr_factors[index]
    g = ops.cast(gradient, variable.dtype)
    if self.torch_weight_decay:
      g = g + self.torch_weight_decay * variable
    m = self.momentums[index]
    if self.momentum:
      self.assign(m, ops.add(ops.multiply(m, self.momentum), g))
      g = m
    self.assign_sub(variable, ops.multiply(lr, g))

  def get_config(self):
    config = super().get_config()
    config.update({"momentum": self.momentum, "weight_decay": self.torch_weight_decay,
                   "clip_norm": self.clip_norm, "lr_multipliers": dict(self.lr_multipliers)})
    return config


def scaled_learning_rate(opt_config, global_batch):
  """`lr * global_batch / base_batch_size` (linear scaling rule)."""
  return float(opt_config.lr) * float(global_batch) / float(opt_config.base_batch_size)


def make_optimizer(opt_config, steps_per_epoch, global_batch, lr_multipliers=None):
  """TorchSGD with the step schedule of `opt_config` (`ctp_tf.defaults.sgd_config()`).

  `opt_config.name = "adam"` (optional; default "sgd") gives Adam with the same schedule,
  global-norm clipping and decoupled weight decay instead (short demo budgets: SGD's start at
  the CtP head's saddle takes hundreds of steps to leave).
  `lr_multipliers` (`{variable.path: factor}`, SGD only) slows or speeds some variables.
  """
  lr = scaled_learning_rate(opt_config, global_batch)
  boundaries = [int(e) * int(steps_per_epoch) for e in opt_config.decay_epochs]
  schedule = StepDecay(lr, boundaries, opt_config.decay_factor)
  if opt_config.get("name", "sgd") == "adam":
    if lr_multipliers:
      raise ValueError("optimizer.backbone_lr_mult != 1 needs optimizer.name = 'sgd'")
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=opt_config.weight_decay,
                                  global_clipnorm=opt_config.clip_norm)
  return TorchSGD(learning_rate=schedule, momentum=opt_config.momentum,
                  weight_decay=opt_config.weight_decay, clip_norm=opt_config.clip_norm,
                  lr_multipliers=lr_multipliers)
