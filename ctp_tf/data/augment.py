"""Decode-after-sampling spatial augmentation: scale + random crop, centre crop, flip.

Only the sampled frames are decoded (JPEG decoding dominates the input pipeline's cost). The
result is exactly "decode the frame, resize it (bilinear, half-pixel centres, no antialiasing:
`tf.image.resize` / OpenCV `INTER_LINEAR` semantics), crop". Measured per clip of 16 frames
at 320x240 and 171x128 on a shared 2-vCPU machine: decoding only the crop window
(`decode_and_crop_jpeg`) saved nothing for windows over half the frame (entropy decoding of
the whole file dominates), and bilinear sampling of just the crop with `crop_and_resize`
cost more than `ResizeBilinear` of the whole frame on uint8, so the frame is decoded whole,
resized whole and sliced. Two cheap paths remain: no resize at all when the frame is already
at the target size (crop-window decode), and optional decoding at 1/2 or 1/4 resolution
(`reduced_decode`), which skips most of the inverse DCT.

All functions take and return uint8, have static output shapes and use stateless randomness
(`seed`: int32 [2]), so the same seed gives the same clip.
"""

import tensorflow as tf

from ctp_tf.data.color import brightness_contrast, hue_saturation  # noqa: F401  (re-export)
from ctp_tf.data.color import split_seed, to_uint8

# libjpeg's fancy chroma upsampling reads one chroma sample beyond a crop window, so a window
# decoded alone differs from the same window of a full decode in its border pixels. Decoding a
# slightly larger window and discarding the margin makes the two identical.
_MARGIN = 2


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


def _decode_frames(jpegs, ratio):
  """Decodes every JPEG in `jpegs` ([N] strings) at 1/ratio scale -> uint8 [N, h, w, 3]."""
  return tf.map_fn(
      lambda j: tf.io.decode_jpeg(j, channels=3, ratio=ratio),
      jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
      parallel_iterations=16)


def _decode_windows(jpegs, y, x, h, w):
  """Decodes the same window of every JPEG in `jpegs` ([N] strings) -> uint8 [N, h, w, 3]."""
  window = tf.stack([y, x, h, w])
  return tf.map_fn(
      lambda j: tf.io.decode_and_crop_jpeg(j, window, channels=3),
      jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
      parallel_iterations=16)


def _decode_rescaled_crop(jpegs, height, width, scaled_h, scaled_w, y_off, x_off, crop_h, crop_w,
                          reduced_decode):
  """Decodes crop [y_off:+crop_h, x_off:+crop_w] of the frames rescaled to scaled_h x scaled_w.

  With `reduced_decode` (True = 2.0, or a float threshold t), frames shrunk by t or more are
  decoded at 1/2 resolution (1/4 from 2t) by libjpeg's DCT scaling, which skips most of the
  inverse DCT work; the bilinear step then starts from that smaller image (a box-filtered
  version of the source: smoother than plain bilinear, and upsampled slightly when t < 2).
  Returns uint8 [N, crop_h, crop_w, 3].
  """
  height = tf.cast(height, tf.int32)
  width = tf.cast(width, tf.int32)
  scaled_h = tf.cast(scaled_h, tf.int32)
  scaled_w = tf.cast(scaled_w, tf.int32)

  def crop_only():
    # Already at the target size: decode just the crop window (plus margin), no resampling.
    y0 = tf.maximum(y_off - _MARGIN, 0)
    x0 = tf.maximum(x_off - _MARGIN, 0)
    y1 = tf.minimum(y_off + crop_h + _MARGIN, height)
    x1 = tf.minimum(x_off + crop_w + _MARGIN, width)
    window = _decode_windows(jpegs, y0, x0, y1 - y0, x1 - x0)
    return window[:, y_off - y0:y_off - y0 + crop_h, x_off - x0:x_off - x0 + crop_w]

  def resized(ratio):
    def fn():
      frames = _decode_frames(jpegs, ratio)
      # ResizeBilinear reads uint8 directly; only the crop is converted back.
      big = tf.image.resize(frames, tf.stack([scaled_h, scaled_w]), method="bilinear")
      return to_uint8(big[:, y_off:y_off + crop_h, x_off:x_off + crop_w])
    return fn

  same = tf.logical_and(tf.equal(scaled_h, height), tf.equal(scaled_w, width))
  branches = [(same, crop_only)]
  if reduced_decode:
    threshold = 2.0 if reduced_decode is True else float(reduced_decode)
    shrink = tf.minimum(tf.cast(height, tf.float32) / tf.cast(scaled_h, tf.float32),
                        tf.cast(width, tf.float32) / tf.cast(scaled_w, tf.float32))
    branches += [(shrink >= 2.0 * threshold, resized(4)), (shrink >= threshold, resized(2))]
  return tf.case(branches, default=resized(1), exclusive=False)


def scale_crop_params(seed, *, height, width, short_sides=None, sizes=None, crop_size):
  """The random choices of `decode_scale_crop` for `seed`: (scaled_h, scaled_w, y_off, x_off).

  The crop is [y_off:y_off+crop_size, x_off:x_off+crop_size] of the frame resized to
  scaled_h x scaled_w. A rescaled side smaller than `crop_size` is raised to it.
  """
  seeds = split_seed(seed, 3)
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
  uniform position is cut out. Only the frames in `indices` are decoded (and only the crop
  window of them when the frame needs no resizing).

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
    flip_prob: also flip the clip left-right with this probability (same as `random_flip`
      after the crop, with a seed derived from `seed`).

  Returns:
    uint8 [T, crop_size, crop_size, 3] (T static when `indices` has a static length).
  """
  sh, sw, y_off, x_off = scale_crop_params(seed, height=height, width=width,
                                           short_sides=short_sides, sizes=sizes,
                                           crop_size=crop_size)
  jpegs = tf.gather(frames, indices)
  clip = _decode_rescaled_crop(jpegs, height, width, sh, sw, y_off, x_off, crop_size, crop_size,
                               reduced_decode)
  clip = tf.ensure_shape(clip, [indices.shape[0], crop_size, crop_size, 3])
  if flip_prob:
    clip = random_flip(clip, tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), 1),
                       flip_prob)
  return clip


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
  clip = tf.gather(clip, position)
  return tf.reshape(clip, indices.shape.as_list() + [crop_size, crop_size, 3])


def random_flip(clip, seed, prob):
  """Flips the whole clip (uint8 [T, H, W, 3]) left-right with probability `prob`."""
  u = tf.random.stateless_uniform([], tf.cast(seed, tf.int32))
  return tf.cond(u < prob, lambda: tf.reverse(clip, axis=[-2]), lambda: tf.identity(clip))
