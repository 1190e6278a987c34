"""Input normalisation as the model's first layer (the pipeline yields uint8 clips)."""

import keras
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="ctp_tf")
class Normalize(keras.layers.Layer):
  """Maps 0..255 RGB (uint8 or float) to ImageNet-normalised floats.

  `(x / 255 - mean) / std` per channel, channels last. Doing this inside the model keeps the
  input pipeline uint8 (4x less host-to-device traffic) and makes exported models take raw
  frames.

  Example:
  >>> import numpy as np
  >>> y = Normalize()(np.full((1, 2, 2, 3), 255, np.uint8))
  >>> tuple(y.shape)
  (1, 2, 2, 3)
  """

  def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD, **kwargs):
    super().__init__(**kwargs)
    self.mean = tuple(float(m) for m in mean)
    self.std = tuple(float(s) for s in std)

  def call(self, x):
    x = ops.cast(x, self.compute_dtype)
    # One multiply-add: x * a + b with a = 1/(255 std), b = -mean/std.
    scale = ops.convert_to_tensor([1.0 / (255.0 * s) for s in self.std], self.compute_dtype)
    shift = ops.convert_to_tensor([-m / s for m, s in zip(self.mean, self.std)],
                                  self.compute_dtype)
    return x * scale + shift

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update({"mean": self.mean, "std": self.std})
    return config
