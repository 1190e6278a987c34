"""Decode-after-sampling spatial augmentation: scale + random crop, centre crop, flip.

JPEG decoding dominates the cost of the input pipeline, so the crop is chosen *before* decoding:
the crop window in the rescaled frame is mapped back to source pixels and only that window of
only the sampled frames is decoded (`tf.io.decode_and_crop_jpeg`), then resampled to the crop
size. The result equals "decode the full frame, resize it (bilinear, half-pixel centres, no
antialiasing: `tf.image.resize` / OpenCV `INTER_LINEAR` semantics), crop" up to float rounding.

All functions take and return uint8, have static output shapes and use stateless randomness
(`seed`: int32 [2]), so the same seed gives the same clip.
"""

import tensorflow as tf

from ctp_tf.data.color import brightness_contrast, hue_saturation  # noqa: F401  (re-export)

# libjpeg's fancy chroma upsampling reads one chroma sample beyond a crop window, so a window
# decoded alone differs from the same window of a full decode in its border pixels. Decoding a
# slightly larger window and discarding the margin makes the two identical.
_MARGIN = 2


def _split(seed, n):
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), num=n)


def _scaled_size(seed, height, width, short_sides, sizes):
  """Draws the (height, width) the frame is rescaled to before cropping."""
  if (short_sides is None) == (sizes is None):
    raise ValueError("pass exactly one of short_sides (pretraining) or sizes (finetuning)")
  if short_sides is not None:
    choices = tf.constant([int(s) for s in short_sides], tf.int32)
  else:
    choices = tf.constant([[int(w), int(h)] for w, h in sizes], tf.int32)
  k = tf.random.stateless_uniform([], seed, minval=0, maxval=int(choices.shape[0]),
                                  dtype=tf.int32)
  if short_sides is not None:
    side = tf.cast(tf.gather(choices, k), tf.float32)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    short = tf.minimum(h, w)
    # Round half up, like OpenCV/mmcv's int(x * scale + 0.5).
    sh = tf.cast(tf.floor(h * side / short + 0.5), tf.int32)
    sw = tf.cast(tf.floor(w * side / short + 0.5), tf.int32)
  else:
    wh = tf.gather(choices, k)
    sw, sh = wh[0], wh[1]
  return sh, sw


def _axis_window(out_start, out_len, scale, src_size):
  """Source window and sample positions along one axis for output pixels out_start...

  Output pixel i of the rescaled frame samples source coordinate (i + 0.5) * scale - 0.5
  (tf.image.resize's half-pixel rule). Returns the window [lo, lo + size) holding every
  bilinear tap (plus a margin, clamped to the image) and the first sample's coordinate
  relative to lo; later samples follow at steps of `scale`.
  """
  first = (tf.cast(out_start, tf.float32) + 0.5) * scale - 0.5
  last = first + float(out_len - 1) * scale
  lo = tf.maximum(tf.cast(tf.floor(first), tf.int32) - _MARGIN, 0)
  hi = tf.minimum(tf.cast(tf.floor(last), tf.int32) + 2 + _MARGIN, src_size)
  return lo, hi - lo, first - tf.cast(lo, tf.float32)


def _decode_windows(jpegs, y, x, h, w, ratio):
  """Decodes the same window of every JPEG in `jpegs` ([N] strings) -> uint8 [N, h, w, 3]."""
  window = tf.stack([y, x, h, w])
  out = tf.map_fn(
      lambda j: tf.io.decode_and_crop_jpeg(j, window, channels=3, ratio=ratio),
      jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
      parallel_iterations=16)
  return out


def _bilinear_crop(window, first_y, step_y, first_x, step_x, crop_h, crop_w, pad, flip):
  """Bilinear samples of uint8 [N, h, w, 3] on a regular grid -> float32 [N, crop_h, crop_w, 3].

  `crop_and_resize` takes uint8 directly and samples any affine grid, which makes it several
  times cheaper than gathers plus float casts. It extrapolates outside the image instead of
  clamping like tf.image.resize; `pad` replicates the border pixels first, for grids that reach
  up to half a pixel past the image (upscaling). `flip` (bool tensor) mirrors the grid
  left-right, which flips the output for free.
  """
  if pad:
    window = tf.pad(window, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    first_y += 1.0
    first_x += 1.0
  shape = tf.shape(window)
  hm1 = tf.cast(tf.maximum(shape[1] - 1, 1), tf.float32)
  wm1 = tf.cast(tf.maximum(shape[2] - 1, 1), tf.float32)
  left = first_x / wm1
  right = (first_x + float(crop_w - 1) * step_x) / wm1
  box = tf.stack([first_y / hm1, tf.where(flip, right, left),
                  (first_y + float(crop_h - 1) * step_y) / hm1, tf.where(flip, left, right)])
  n = shape[0]
  return tf.image.crop_and_resize(window, tf.tile(box[None], [n, 1]), tf.range(n),
                                  [crop_h, crop_w], method="bilinear")


def _to_uint8(x):
  # Values are >= 0 here, so +0.5 and truncation is rounding (half up) in two cheap ops.
  return tf.saturate_cast(x + 0.5, tf.uint8)


def _decode_rescaled_crop(jpegs, height, width, scaled_h, scaled_w, y_off, x_off, crop_h, crop_w,
                          reduced_decode, flip=False):
  """Decodes crop [y_off:+crop_h, x_off:+crop_w] of the frames rescaled to scaled_h x scaled_w.

  With `reduced_decode` (True = 2.0, or a float threshold t), frames shrunk by t or more are
  decoded at 1/2 resolution (1/4 from 2t) by libjpeg's DCT scaling, which skips most of the
  inverse DCT work; the bilinear step then starts from that smaller image (a box-filtered
  version of the source: smoother than plain bilinear, and upsampled slightly when t < 2).
  """
  flip = tf.convert_to_tensor(flip, tf.bool)
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)

  def branch(ratio):
    def fn():
      # libjpeg's scaled output size is ceil(size / ratio).
      src_h = (height + ratio - 1) // ratio
      src_w = (width + ratio - 1) // ratio
      sy = tf.cast(src_h, tf.float32) / tf.cast(scaled_h, tf.float32)
      sx = tf.cast(src_w, tf.float32) / tf.cast(scaled_w, tf.float32)
      ylo, yn, fy = _axis_window(y_off, crop_h, sy, src_h)
      xlo, xn, fx = _axis_window(x_off, crop_w, sx, src_w)
      window = _decode_windows(jpegs, ylo, xlo, yn, xn, ratio)
      return tf.cond(
          tf.logical_or(sy < 1.0, sx < 1.0),
          lambda: _bilinear_crop(window, fy, sy, fx, sx, crop_h, crop_w, pad=True, flip=flip),
          lambda: _bilinear_crop(window, fy, sy, fx, sx, crop_h, crop_w, pad=False, flip=flip))
    return fn

  if not reduced_decode:
    return branch(1)()
  threshold = 2.0 if reduced_decode is True else float(reduced_decode)
  shrink = tf.minimum(tf.cast(height, tf.float32) / tf.cast(scaled_h, tf.float32),
                      tf.cast(width, tf.float32) / tf.cast(scaled_w, tf.float32))
  return tf.case([(shrink >= 2.0 * threshold, branch(4)), (shrink >= threshold, branch(2))],
                 default=branch(1))


def scale_crop_params(seed, *, height, width, short_sides=None, sizes=None, crop_size):
  """The random choices of `decode_scale_crop` for `seed`: (scaled_h, scaled_w, y_off, x_off).

  The crop is [y_off:y_off+crop_size, x_off:x_off+crop_size] of the frame resized to
  scaled_h x scaled_w. A rescaled side smaller than `crop_size` is raised to it.
  """
  seeds = _split(seed, 3)
  sh, sw = _scaled_size(seeds[0], height, width, short_sides, sizes)
  sh = tf.maximum(sh, crop_size)
  sw = tf.maximum(sw, crop_size)
  y_off = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=sh - crop_size + 1,
                                      dtype=tf.int32)
  x_off = tf.random.stateless_uniform([], seeds[2], minval=0, maxval=sw - crop_size + 1,
                                      dtype=tf.int32)
  return sh, sw, y_off, x_off


def decode_scale_crop(frames, indices, seed, *, height, width, short_sides=None, sizes=None,
                      crop_size, reduced_decode=False, flip_prob=0.0):
  """Decodes a randomly scaled, randomly cropped clip from JPEG frames.

  The frame is (virtually) rescaled so its short side is one of `short_sides` (aspect kept;
  pretraining) or to one of `sizes` = (w, h) pairs (finetuning), then a `crop_size` square at a
  uniform position is cut out. Only that window of only the frames in `indices` is decoded.

  Example:
  >>> clip = decode_scale_crop(video["frames"], train_indices(video["num_frames"], seed, 16, [2]),
  ...                          seed, height=video["height"], width=video["width"],
  ...                          short_sides=(112, 128, 144), crop_size=112)   # uint8 [16,112,112,3]

  Args:
    frames: tf.string [F] JPEG frames of one video.
    indices: int32 [T] frames to decode.
    seed: int32 [2] stateless seed (scale choice and crop position).
    height, width: int scalars, the stored frame size.
    short_sides: sequence of short-side lengths to draw from, or None.
    sizes: sequence of (w, h) to draw from, or None. Exactly one of the two.
    crop_size: side of the square crop. A rescaled side smaller than it is raised to it.
    reduced_decode: False (exact), True, or a shrink threshold t: decode at 1/2 resolution
      when the frame shrinks by >= t (True: t = 2, where the result is close to exact; t ~ 1.6
      makes short sides 128 from 240 use it too, at the cost of slightly softer frames).
    flip_prob: also flip the clip left-right with this probability, at no cost (the sampling
      grid is mirrored). Equivalent to `random_flip` after the crop, with its own seed stream.

  Returns:
    uint8 [T, crop_size, crop_size, 3] (T static when `indices` has a static length).
  """
  sh, sw, y_off, x_off = scale_crop_params(seed, height=height, width=width,
                                           short_sides=short_sides, sizes=sizes,
                                           crop_size=crop_size)
  jpegs = tf.gather(frames, indices)
  flip = tf.random.stateless_uniform(
      [], tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), 1)) < flip_prob
  clip = _decode_rescaled_crop(jpegs, height, width, sh, sw, y_off, x_off, crop_size, crop_size,
                               reduced_decode, flip)
  return tf.ensure_shape(_to_uint8(clip), [indices.shape[0], crop_size, crop_size, 3])


def decode_center(frames, indices, *, resize=(171, 128), crop_size=112, height=None, width=None):
  """Test-time decode: resize to `resize` = (w, h), centre crop `crop_size`.

  Each distinct frame is decoded once even when clips overlap. The crop starts at
  ((h - crop) // 2, (w - crop) // 2).

  Args:
    frames: tf.string [F] JPEG frames.
    indices: int32 [T] or [num_clips, T].
    resize: (w, h) before the crop.
    crop_size: square crop side.
    height, width: stored frame size; read from the first JPEG header when None.

  Returns:
    uint8 [*indices.shape, crop_size, crop_size, 3].
  """
  indices = tf.convert_to_tensor(indices, tf.int32)
  if height is None or width is None:
    shape = tf.io.extract_jpeg_shape(frames[0])
    height, width = shape[0], shape[1]
  rw, rh = int(resize[0]), int(resize[1])
  if rw < crop_size or rh < crop_size:
    raise ValueError(f"resize {resize} is smaller than crop_size {crop_size}")
  flat = tf.reshape(indices, [-1])
  unique, position = tf.unique(flat)
  clip = _decode_rescaled_crop(tf.gather(frames, unique), height, width, rh, rw,
                               (rh - crop_size) // 2, (rw - crop_size) // 2, crop_size, crop_size,
                               reduced_decode=False)
  clip = tf.gather(_to_uint8(clip), position)
  return tf.reshape(clip, indices.shape.as_list() + [crop_size, crop_size, 3])


def random_flip(clip, seed, prob):
  """Flips the whole clip (uint8 [T, H, W, 3]) left-right with probability `prob`."""
  u = tf.random.stateless_uniform([], tf.cast(seed, tf.int32))
  return tf.cond(u < prob, lambda: tf.reverse(clip, axis=[-2]), lambda: tf.identity(clip))
