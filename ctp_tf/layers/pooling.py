"""Adaptive average pooling with PyTorch's bin rule, channels last."""

import math

import keras
from keras import ops


def adaptive_bins(n, m):
  """PyTorch's adaptive pooling bins: bin i covers [floor(i*n/m), ceil((i+1)*n/m))."""
  return [(math.floor(i * n / m), math.ceil((i + 1) * n / m)) for i in range(m)]


@keras.saving.register_keras_serializable(package="ctp_tf")
class AdaptiveAveragePooling3D(keras.layers.Layer):
  """`torch.nn.AdaptiveAvgPool3d` for channels-last `[B, T, H, W, C]` inputs.

  Bins may overlap when the input size is not a multiple of the output size (PyTorch's rule);
  the input's T, H and W must be static. Output `[B, t, h, w, C]`.

  Example:
  >>> import numpy as np
  >>> y = AdaptiveAveragePooling3D((2, 3, 3))(np.ones((1, 2, 7, 7, 4), "float32"))
  >>> tuple(y.shape)
  (1, 2, 3, 3, 4)
  """

  def __init__(self, output_size, **kwargs):
    super().__init__(**kwargs)
    if isinstance(output_size, int):
      output_size = (output_size,) * 3
    self.output_size = tuple(int(s) for s in output_size)

  def call(self, x):
    sizes = x.shape[1:4]
    if any(s is None for s in sizes):
      raise ValueError(f"{self.name}: adaptive pooling needs static T, H, W; got {x.shape}")
    for axis, (n, m) in enumerate(zip(sizes, self.output_size), start=1):
      if n == m:
        continue
      pieces = []
      for start, end in adaptive_bins(n, m):
        index = [slice(None)] * 5
        index[axis] = slice(start, end)
        pieces.append(ops.mean(x[tuple(index)], axis=axis, keepdims=True))
      x = ops.concatenate(pieces, axis=axis)
    return x

  def compute_output_shape(self, input_shape):
    return (input_shape[0],) + self.output_size + (input_shape[-1],)

  def get_config(self):
    config = super().get_config()
    config.update({"output_size": self.output_size})
    return config
