"""Colour jitter for uint8 clips: hue/saturation, brightness and contrast, static or "dynamic".

"Dynamic" (REFERENCE.md, pretraining) means a value is drawn at 2 or 3 key frames spread evenly
over the clip (first and last frame always; the third, if any, in the middle) and linearly
interpolated for the frames in between, so the jitter changes smoothly over time and the
network cannot track a patch by its colour alone.

Semantics (OpenCV-style, uint8 in and out, clipped to 0..255 once at the end):
- hue: shift by U(-hue_range, hue_range) in OpenCV's 0..180 hue units (degrees / 2), wrapping.
- saturation: x exp(U(-saturation_range, saturation_range)), clipped to the valid range.
- brightness: + U(-brightness_range, brightness_range) grey levels.
- contrast: alpha = exp(U(-contrast_range, contrast_range)); pixel * alpha + (1 - alpha) * m,
  m = mean grey level (ITU-R 601 luma) after the brightness change. The PyTorch CtP release
  blends with the mean grey level too; we take each frame's own mean, so (before clipping)
  contrast never changes a frame's mean brightness, which keeps the dynamic variant, whose
  alpha differs per frame, from flickering.
Each op is applied to the whole clip with its probability; all randomness is stateless.
"""

import tensorflow as tf

_LUMA = (0.299, 0.587, 0.114)


def split_seed(seed, n):
  return tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), num=n)


def to_uint8(x):
  # Round half up and clip in two cheap ops (saturate_cast clips; truncation of x + 0.5 rounds
  # for x >= 0, and anything below 0 saturates to 0 anyway).
  return tf.saturate_cast(x + 0.5, tf.uint8)


def hue_saturation(clip, seed, *, prob, hue_range, saturation_range):
  """With probability `prob`, shifts hue and scales saturation of a uint8 [..., 3] clip.

  Example:
  >>> out = hue_saturation(clip, [1, 2], prob=0.25, hue_range=12.0, saturation_range=0.1)
  """
  apply, hue, log_sat = hue_saturation_params(seed, prob=prob, hue_range=hue_range,
                                              saturation_range=saturation_range)
  return tf.cond(apply, lambda: to_uint8(_hue_saturation_pixels(clip, hue, log_sat)),
                 lambda: tf.identity(clip))


def _hue_saturation_pixels(clip, hue, log_sat):
  """Float32 result (not yet rounded) of the hue shift and saturation scaling of one clip."""
  # The fused AdjustHue / AdjustSaturation kernels (one pass each, HSV per pixel) are faster
  # than rgb_to_hsv + hsv_to_rgb; HSV hue and saturation do not depend on the value scale, so
  # they run on 0..255 directly. Hue delta is in turns: 180 OpenCV units = one turn.
  x = tf.image.adjust_hue(tf.cast(clip, tf.float32), hue / 180.0)
  return tf.image.adjust_saturation(x, tf.exp(log_sat))


def _keyframe_curve(seed, num_frames, low, high, keyframe_probs):
  """Per-frame values: U(low, high) at K evenly spaced key frames, linearly interpolated.

  K = 2 + i with i drawn from `keyframe_probs` (so (0.7, 0.3) gives 2 or 3 key frames).
  Returns float32 [num_frames].
  """
  seeds = split_seed(seed, 2)
  max_k = 1 + len(keyframe_probs)
  logits = tf.math.log(tf.constant([float(p) for p in keyframe_probs], tf.float32))[None]
  k = 2 + tf.cast(tf.random.stateless_categorical(logits, 1, seeds[0])[0, 0], tf.int32)
  values = tf.random.stateless_uniform([max_k], seeds[1], low, high)
  if num_frames == 1:
    return values[:1]
  # Position of each frame in key-frame units: frame t lies between key frames floor(u), +1.
  u = (tf.range(num_frames, dtype=tf.float32) * tf.cast(k - 1, tf.float32)
       / float(num_frames - 1))
  left = tf.minimum(tf.cast(tf.floor(u), tf.int32), k - 2)
  w = u - tf.cast(left, tf.float32)
  return tf.gather(values, left) * (1.0 - w) + tf.gather(values, left + 1) * w


def brightness_contrast(clip, seed, *, brightness_prob, brightness_range, contrast_prob,
                        contrast_range, dynamic, dynamic_keyframe_probs=(0.7, 0.3)):
  """Brightness shift then contrast scaling of a uint8 [T, H, W, 3] clip (static or dynamic).

  Example:
  >>> out = brightness_contrast(clip, [3, 4], brightness_prob=0.5, brightness_range=30.0,
  ...                           contrast_prob=0.5, contrast_range=0.12, dynamic=True)

  Args:
    clip: uint8 [T, H, W, 3] with static T.
    seed: int32 [2].
    brightness_prob, brightness_range: + U(-range, range) with this probability.
    contrast_prob, contrast_range: x exp(U(-range, range)) about the frame mean grey level.
    dynamic: draw values at key frames and interpolate over time, else one value per clip.
    dynamic_keyframe_probs: probabilities of 2, 3, ... key frames.

  Returns:
    uint8 [T, H, W, 3].
  """
  num_frames = clip.shape[0]
  if num_frames is None:
    raise ValueError("brightness_contrast needs a clip with a static number of frames")
  shift, alpha = brightness_contrast_params(
      seed, num_frames, brightness_prob=brightness_prob, brightness_range=brightness_range,
      contrast_prob=contrast_prob, contrast_range=contrast_range, dynamic=dynamic,
      dynamic_keyframe_probs=dynamic_keyframe_probs)
  applied = tf.logical_or(tf.reduce_any(tf.not_equal(shift, 0.0)),
                          tf.reduce_any(tf.not_equal(alpha, 1.0)))

  def jitter():
    x = tf.cast(clip, tf.float32) + shift[:, None, None, None]
    grey = tf.tensordot(x, tf.constant(_LUMA, tf.float32), axes=[[3], [0]])
    mean = tf.reduce_mean(grey, axis=[1, 2])
    a = alpha[:, None, None, None]
    x = x * a + (1.0 - a) * mean[:, None, None, None]
    return to_uint8(x)

  return tf.cond(applied, jitter, lambda: tf.identity(clip))


# Batched forms for the pretraining pipeline, which applies colour jitter after batching (the
# synthesis runs on whole batches there). The random draws are made per clip, in the per-clip
# map, with exactly the draws of `hue_saturation` / `brightness_contrast` for the same seed;
# only the pixel work runs on the batch.


def hue_saturation_params(seed, *, prob, hue_range, saturation_range):
  """The random draws of `hue_saturation(clip, seed, ...)`: (apply bool, hue, log_saturation).

  Example:
  >>> apply, hue, log_sat = hue_saturation_params([1, 2], prob=0.25, hue_range=12.0,
  ...                                             saturation_range=0.1)
  """
  seeds = split_seed(seed, 3)
  apply = tf.random.stateless_uniform([], seeds[0]) < prob
  hue = tf.random.stateless_uniform([], seeds[1], -float(hue_range), float(hue_range))
  log_sat = tf.random.stateless_uniform(
      [], seeds[2], -float(saturation_range), float(saturation_range))
  return apply, hue, log_sat


def hue_saturation_batch(clips, apply, hue, log_sat):
  """`hue_saturation` of each clip of a batch, with per-clip draws (`hue_saturation_params`).

  Args:
    clips: `[B, ..., 3]` uint8, or float32 holding whole grey levels 0..255 (then the result is
      float32 holding whole grey levels too, so a following float op needs no uint8 round trip).
    apply: bool `[B]`; hue, log_sat: float32 `[B]`.
  Returns:
    same shape and dtype as `clips`; clips with `apply` False are returned unchanged.
  """
  idx = tf.where(apply)[:, 0]

  def one(args):
    # Same rounding as `hue_saturation` (to_uint8), kept in float when asked.
    return tf.floor(tf.clip_by_value(_hue_saturation_pixels(*args) + 0.5, 0.0, 255.0))

  def jitter():
    # Only the selected clips (a quarter by default) pay the two HSV passes. map_fn's
    # per-iteration overhead is negligible next to one clip's pixels.
    out = tf.map_fn(one, (tf.gather(clips, idx), tf.gather(hue, idx), tf.gather(log_sat, idx)),
                    fn_output_signature=tf.float32)
    return tf.tensor_scatter_nd_update(clips, idx[:, None], tf.cast(out, clips.dtype))

  return tf.cond(tf.size(idx) > 0, jitter, lambda: tf.identity(clips))


def brightness_contrast_params(seed, num_frames, *, brightness_prob, brightness_range,
                               contrast_prob, contrast_range, dynamic,
                               dynamic_keyframe_probs=(0.7, 0.3)):
  """The draws of `brightness_contrast(clip, seed, ...)` as per-frame (shift, alpha) `[T]`.

  shift is 0 and alpha 1 where the op is not applied, which `brightness_contrast_batch` maps
  to the unchanged clip exactly.
  """
  seeds = split_seed(seed, 4)
  do_b = tf.random.stateless_uniform([], seeds[0]) < brightness_prob
  do_c = tf.random.stateless_uniform([], seeds[1]) < contrast_prob
  b_range = float(brightness_range)
  c_range = float(contrast_range)
  if dynamic:
    shift = _keyframe_curve(seeds[2], num_frames, -b_range, b_range, dynamic_keyframe_probs)
    log_alpha = _keyframe_curve(seeds[3], num_frames, -c_range, c_range, dynamic_keyframe_probs)
  else:
    shift = tf.fill([num_frames], tf.random.stateless_uniform([], seeds[2], -b_range, b_range))
    log_alpha = tf.fill([num_frames],
                        tf.random.stateless_uniform([], seeds[3], -c_range, c_range))
  return tf.where(do_b, shift, 0.0), tf.exp(tf.where(do_c, log_alpha, 0.0))


def brightness_contrast_batch(clips, shift, alpha):
  """`brightness_contrast` of each clip of a batch from per-frame (shift, alpha) `[B, T]`.

  The same arithmetic as `brightness_contrast` rearranged into one affine map per frame:
  (x + s) * a + (1 - a) * mean_grey(x + s) = a * x + s + (1 - a) * mean_grey(x), because the
  luma weights sum to 1. That takes one pass for the per-channel means and one multiply-add
  instead of a brightness pass, a luma tensordot and the blend.

  Args:
    clips: uint8 `[B, T, H, W, 3]`, or float32 holding whole grey levels.
    shift, alpha: float32 `[B, T]` (`brightness_contrast_params` of each clip).
  Returns:
    uint8 `[B, T, H, W, 3]`.
  """
  x = tf.cast(clips, tf.float32)
  channel_mean = tf.reduce_mean(x, axis=[2, 3])                              # [B, T, 3]
  grey = tf.reduce_sum(channel_mean * tf.constant(_LUMA, tf.float32), -1)    # [B, T]
  # + 0.5: to_uint8's rounding folded into the offset.
  offset = shift + (1.0 - alpha) * grey + 0.5
  y = x * alpha[..., None, None, None] + offset[..., None, None, None]
  return tf.saturate_cast(y, tf.uint8)
