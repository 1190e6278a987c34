"""ROIAlign with torchvision's `roi_align(..., aligned=True)` semantics, channels last.

Two implementations give the same numbers:

* `"matmul"`, the default on every backend and the one used under XLA / on TPU: bilinear
  sampling written as two small interpolation matrices per box, `A_y [K, out, H]` and
  `A_x [K, out, W]`, each already averaged over the `sampling_ratio` samples of a bin
  (bilinear weights are separable, so averaging the s x s grid factorises too). The output
  is `A_y @ F[b] @ A_x^T`: dense ops only (no data-dependent gathers besides picking the
  box's image), so it compiles under XLA, runs on TPU, and its gradient reaches the features.
* `"crop_and_resize"` (TensorFlow backend only, imported lazily): `tf.image.crop_and_resize`
  samples the (out*s) x (out*s) grid, then s x s blocks are averaged. It has no XLA kernel,
  so in an XLA context (`jit_compile=True`, TPU) the layer falls back to `"matmul"`; the
  context is detected with TF's own `GraphOrParentsInXlaContext` (the check TF uses to pick
  XLA-friendly control flow).

`impl="auto"` picks `"crop_and_resize"` on the TensorFlow backend outside XLA, else
`"matmul"`.

Precision: GPUs and TPUs run float32 matmuls with TF32 / bfloat16 inputs by default, which put
the `"matmul"` path 1.9e-3 (max abs, N(0, 1) features) off torchvision on an H100. On JAX the
einsums ask for full float32 (`precision="highest"`; measured 0 extra time in the CtP train step).
TensorFlow has no per-op switch: under XLA on a GPU or TPU the layer follows the global
`tf.config.experimental.enable_tensor_float_32_execution` setting.

Border rules (torchvision): a sample with a coordinate below -1 or above the map size counts
zero; one within a pixel outside the map is clamped to the edge. Boxes are
`(batch_index, x1, y1, x2, y2)` in input pixels; `aligned=True` shifts by half a pixel after
scaling so that pixel centres line up.
"""

import keras
from keras import ops


def _interp_matrix(start, bin_size, out, samples, size, dtype):
  """[K, out, size] matrix whose row p averages the bilinear weights of bin p's samples."""
  k = ops.arange(out * samples, dtype=dtype)
  # Sample positions: start + (p + (i + 0.5) / s) * bin, flattened over (p, i).
  pos = start[:, None] + (k[None, :] + 0.5) / samples * bin_size[:, None]   # [K, out*s]
  valid = ops.logical_and(pos >= -1.0, pos <= float(size))
  pos = ops.clip(pos, 0.0, float(size - 1))
  low = ops.floor(pos)
  frac = pos - low
  low_i = ops.cast(low, "int32")
  high_i = ops.minimum(low_i + 1, size - 1)
  w = (ops.one_hot(low_i, size, dtype=dtype) * (1.0 - frac)[..., None]
       + ops.one_hot(high_i, size, dtype=dtype) * frac[..., None])
  w = w * ops.cast(valid, dtype)[..., None]
  w = ops.reshape(w, (-1, out, samples, size))
  return ops.mean(w, axis=2)


def _einsum(subscripts, a, b):
  if keras.backend.backend() == "jax":
    import jax.numpy as jnp   # pylint: disable=import-outside-toplevel
    # GPUs and TPUs round float32 matmul inputs to TF32 / bfloat16 by default: 1.9e-3 off
    # torchvision on an H100. These einsums are tiny next to the backbone, so ask for float32.
    return jnp.einsum(subscripts, a, b, precision="highest")
  return ops.einsum(subscripts, a, b)


def _in_xla_context():
  import tensorflow as tf
  from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import
  if tf.executing_eagerly():
    return False
  try:
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
  except Exception:   # pylint: disable=broad-except
    return True       # unknown graph: the safe choice is the XLA-compatible path


def _tpu_present():
  import tensorflow as tf
  return bool(tf.config.list_logical_devices("TPU"))


@keras.saving.register_keras_serializable(package="ctp_tf")
class ROIAlign(keras.layers.Layer):
  """Crops `[out, out]` feature patches for boxes, like `torchvision.ops.roi_align`.

  Args:
    output_size: int or (h, w) of each crop.
    spatial_scale: multiplies box coordinates (1 / feature stride).
    sampling_ratio: samples per bin along each axis (must be > 0; torchvision's adaptive
      `-1` depends on box sizes and has no static shape).
    aligned: half-pixel offset (torchvision `aligned=True`); False reproduces the legacy rule
      (box sizes clamped to at least 1).
    impl: "auto", "matmul" or "crop_and_resize" (see module docstring).

  Call: `layer(features [B, H, W, C], rois [K, 5])` -> `[K, out_h, out_w, C]`.

  Example:
  >>> import numpy as np
  >>> f = np.random.rand(2, 14, 14, 8).astype("float32")
  >>> rois = np.array([[0, 8, 8, 40, 48], [1, -4, 0, 20, 120]], "float32")
  >>> tuple(ROIAlign(5, 1 / 8)(f, rois).shape)
  (2, 5, 5, 8)
  """

  def __init__(self, output_size, spatial_scale, sampling_ratio=2, aligned=True, impl="auto",
               **kwargs):
    super().__init__(**kwargs)
    if isinstance(output_size, int):
      output_size = (output_size, output_size)
    self.output_size = tuple(int(s) for s in output_size)
    self.spatial_scale = float(spatial_scale)
    if int(sampling_ratio) <= 0:
      raise ValueError("ROIAlign: sampling_ratio must be > 0 (static shapes), got "
                       f"{sampling_ratio}")
    self.sampling_ratio = int(sampling_ratio)
    self.aligned = bool(aligned)
    if impl not in ("auto", "matmul", "crop_and_resize"):
      raise ValueError(f"ROIAlign: impl must be auto, matmul or crop_and_resize, got {impl!r}")
    self.impl = impl

  def _boxes(self, rois, dtype):
    rois = ops.cast(rois, dtype)
    offset = 0.5 if self.aligned else 0.0
    x1 = rois[:, 1] * self.spatial_scale - offset
    y1 = rois[:, 2] * self.spatial_scale - offset
    x2 = rois[:, 3] * self.spatial_scale - offset
    y2 = rois[:, 4] * self.spatial_scale - offset
    w, h = x2 - x1, y2 - y1
    if not self.aligned:
      w, h = ops.maximum(w, 1.0), ops.maximum(h, 1.0)
    return x1, y1, w, h

  def _use_crop_and_resize(self):
    if self.impl == "matmul" or keras.backend.backend() != "tensorflow":
      if self.impl == "crop_and_resize" and keras.backend.backend() != "tensorflow":
        raise ValueError("ROIAlign impl='crop_and_resize' needs the TensorFlow backend")
      return False
    return not (_in_xla_context() or _tpu_present())

  def call(self, features, rois):
    if self._use_crop_and_resize():
      return self._crop_and_resize(features, rois)
    return self._matmul(features, rois)

  def _matmul(self, features, rois):
    dtype = "float32"
    height, width = features.shape[1], features.shape[2]
    if height is None or width is None:
      raise ValueError(f"{self.name}: feature map H and W must be static, got {features.shape}")
    x1, y1, w, h = self._boxes(rois, dtype)
    out_h, out_w = self.output_size
    s = self.sampling_ratio
    ay = _interp_matrix(y1, h / out_h, out_h, s, height, dtype)   # [K, out_h, H]
    ax = _interp_matrix(x1, w / out_w, out_w, s, width, dtype)    # [K, out_w, W]
    batch_index = ops.cast(rois[:, 0], "int32")
    f = ops.take(features, batch_index, axis=0)                    # [K, H, W, C]
    ay = ops.cast(ay, f.dtype)
    ax = ops.cast(ax, f.dtype)
    f = _einsum("kph,khwc->kpwc", ay, f)
    return _einsum("kqw,kpwc->kpqc", ax, f)

  def _crop_and_resize(self, features, rois):
    import tensorflow as tf   # lazy: layers must import without TensorFlow
    out_h, out_w = self.output_size
    s = self.sampling_ratio
    dtype = features.dtype
    # Replicate the edge once: samples within one pixel outside the map then read the edge
    # value (torchvision's clamp) and anything further out hits the extrapolation value 0.
    padded = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    height = tf.cast(tf.shape(padded)[1], tf.float32)
    width = tf.cast(tf.shape(padded)[2], tf.float32)
    x1, y1, w, h = self._boxes(rois, tf.float32)
    gh, gw = out_h * s, out_w * s
    # First and last sample positions, shifted by the one-pixel pad.
    ya = y1 + 0.5 * h / gh + 1.0
    yb = y1 + (gh - 0.5) * h / gh + 1.0
    xa = x1 + 0.5 * w / gw + 1.0
    xb = x1 + (gw - 0.5) * w / gw + 1.0
    boxes = tf.stack([ya / (height - 1.0), xa / (width - 1.0),
                      yb / (height - 1.0), xb / (width - 1.0)], axis=1)
    crops = tf.image.crop_and_resize(
        tf.cast(padded, tf.float32), boxes, tf.cast(rois[:, 0], tf.int32), (gh, gw),
        method="bilinear", extrapolation_value=0.0)
    channels = features.shape[-1] if features.shape[-1] is not None else tf.shape(features)[-1]
    crops = tf.reshape(crops, [-1, out_h, s, out_w, s, channels])
    return tf.cast(tf.reduce_mean(crops, axis=[2, 4]), dtype)

  def compute_output_shape(self, features_shape, rois_shape):
    return (rois_shape[0],) + self.output_size + (features_shape[-1],)

  def get_config(self):
    config = super().get_config()
    config.update({"output_size": self.output_size, "spatial_scale": self.spatial_scale,
                   "sampling_ratio": self.sampling_ratio, "aligned": self.aligned,
                   "impl": self.impl})
    return config
