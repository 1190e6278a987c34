"""Weight initialisers drawn with numpy.

Why: on the JAX CPU backend every `keras.random.normal` of a new shape is an XLA compile, and
for 5-D conv kernels that compile takes 10-30 s here (a flat vector of the same size: ~1 s),
so building one R3D-18 cost minutes. Drawing initial weights with numpy costs nothing on any
backend. Seeding follows Keras: an int `seed` gives the same values every call; `None` uses
numpy's global generator, which `keras.utils.set_random_seed` seeds.
"""

import math

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="ctp_tf")
class NumpyNormal(keras.initializers.Initializer):
  """Untruncated normal. `stddev` fixed, or `mode="fan_out"` / `"fan_in"` for Kaiming
  (He) normal with `gain` (std = sqrt(gain / fan)), fans counted like PyTorch for conv
  kernels `[*spatial, in, out]` and dense kernels `[in, out]`."""

  def __init__(self, stddev=None, mode=None, gain=2.0, mean=0.0, seed=None):
    if (stddev is None) == (mode is None):
      raise ValueError("NumpyNormal: give exactly one of stddev and mode")
    if mode not in (None, "fan_in", "fan_out"):
      raise ValueError(f"NumpyNormal: mode must be fan_in or fan_out, got {mode!r}")
    self.stddev, self.mode, self.gain, self.mean, self.seed = stddev, mode, gain, mean, seed

  def __call__(self, shape, dtype=None):
    shape = tuple(int(s) for s in shape)
    std = self.stddev
    if std is None:
      receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
      fan = receptive * (shape[-2] if self.mode == "fan_in" else shape[-1])
      std = math.sqrt(self.gain / max(fan, 1))
    rng = np.random.default_rng(self.seed) if self.seed is not None else np.random
    values = rng.normal(self.mean, std, size=shape)
    dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
    return keras.ops.convert_to_tensor(values.astype(dtype), dtype=dtype)

  def get_config(self):
    return {"stddev": self.stddev, "mode": self.mode, "gain": self.gain, "mean": self.mean,
            "seed": self.seed}
