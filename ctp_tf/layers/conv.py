"""A Conv3D computed as a sum of 2D convolutions over the kernel's time offsets.

Same weights (`kernel` `[kt, kh, kw, C_in, C_out]`), same outputs as `keras.layers.Conv3D`;
only the arithmetic is arranged differently. Why: TensorFlow's CPU Conv3D gradient kernels are
pathologically slow for strided convolutions on small maps (measured here, TF 2.21, 2 cores:
the 3x7x7 stride-(1,2,2) stem on 8x18x38x38x3 took 7.8 s for its filter gradient, the same
work as three 2D convolutions 0.08 s), while 2D convolutions run on oneDNN. On the other
backends the 2D form costs about what the 3D one does, so it is used everywhere: one code path,
identical numbers on every backend.

For time offset `dt` the frames `dt, dt + st, ...` (exactly the ones a stride-`st` 3D
convolution visits) are folded into the batch, convolved with `kernel[dt]`, and the `kt`
results are summed.
"""

import keras
from keras import ops


class FrameConv3D(keras.layers.Conv3D):
  """`keras.layers.Conv3D` (channels-last, no dilation) evaluated as a sum of 2D convolutions.

  Example:
  >>> import numpy as np
  >>> layer = FrameConv3D(8, (3, 7, 7), strides=(1, 2, 2))
  >>> layer(np.zeros((2, 8, 32, 32, 3), "float32")).shape
  (2, 6, 13, 13, 8)
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.data_format != "channels_last":
      raise ValueError("FrameConv3D supports data_format='channels_last' only.")
    if tuple(self.dilation_rate) != (1, 1, 1):
      raise ValueError("FrameConv3D supports dilation_rate=1 only.")
    if self.padding == "same" and tuple(self.strides) != (1, 1, 1):
      # Keras' "same" pads asymmetrically under stride; callers pad explicitly instead.
      raise ValueError("FrameConv3D: padding='same' needs strides 1 (pad explicitly).")
    if self.groups != 1:
      raise ValueError("FrameConv3D supports groups=1 only.")

  def convolution_op(self, inputs, kernel):
    kt = int(kernel.shape[0])
    st, sh, sw = (int(s) for s in self.strides)
    x = inputs
    if self.padding == "same" and kt > 1:
      x = ops.pad(x, [[0, 0], [(kt - 1) // 2, kt // 2], [0, 0], [0, 0], [0, 0]])
    shape = ops.shape(x)
    out = None
    for dt in range(kt):
      stop = dt - (kt - 1)
      frames = x[:, dt:(stop if stop else None):st]
      fshape = ops.shape(frames)
      flat = ops.reshape(frames, (-1, shape[2], shape[3], shape[4]))
      y = ops.conv(flat, kernel[dt], strides=(sh, sw), padding=self.padding)
      out = y if out is None else out + y
    oshape = ops.shape(out)
    return ops.reshape(out, (shape[0], fshape[1], oshape[1], oshape[2], oshape[3]))
