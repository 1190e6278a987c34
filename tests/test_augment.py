"""Spatial and colour augmentation: crop-window decoding equals full decode, bounds, seeds."""

import numpy as np
import pytest
import tensorflow as tf

from ctp_tf.data import augment, color


def _smooth_frames(n, h, w, seed=0):
  """JPEG frames of smooth random images (bilinear comparisons are meaningful on them)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    small = rng.uniform(0, 255, (h // 8, w // 8, 3)).astype(np.float32)
    img = tf.image.resize(small, [h, w]).numpy() + rng.normal(0, 4, (h, w, 3))
    out.append(tf.io.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=95))
  return tf.stack(out)


@pytest.fixture(scope="module")
def frames():
  return _smooth_frames(6, 48, 64)


def _full_decode(frames, indices):
  return tf.stack([tf.io.decode_jpeg(frames[i], channels=3) for i in indices.numpy()])


def _reference(frames, indices, sh, sw, y, x, crop):
  """Decode whole frames, resize (bilinear, half-pixel), crop, round: the slow definition."""
  full = tf.cast(_full_decode(frames, indices), tf.float32)
  resized = tf.image.resize(full, [sh, sw], method="bilinear")[:, y:y + crop, x:x + crop]
  return np.clip(np.round(resized.numpy()), 0, 255)


@pytest.mark.parametrize("kw", [
    dict(short_sides=(32, 40, 56, 96)),           # down- and up-scaling
    dict(sizes=((40, 30), (71, 53), (64, 48))),   # (w, h), aspect not kept
])
def test_decode_scale_crop_equals_full_decode_resize_crop(frames, kw):
  indices = tf.constant([0, 2, 5, 5], tf.int32)
  seen_sizes = set()
  for s in range(10):
    seed = tf.constant([s, 11])
    sh, sw, y, x = [int(v) for v in augment.scale_crop_params(
        seed, height=48, width=64, crop_size=24, **kw)]
    seen_sizes.add((sh, sw))
    out = augment.decode_scale_crop(frames, indices, seed, height=48, width=64, crop_size=24,
                                    **kw)
    assert out.dtype == tf.uint8 and out.shape == (4, 24, 24, 3)
    ref = _reference(frames, indices, sh, sw, y, x, 24)
    assert np.abs(out.numpy().astype(np.float64) - ref).max() <= 1.0, (sh, sw, y, x)
  assert len(seen_sizes) >= 2


def test_scale_crop_params_stay_in_frame():
  params = tf.function(lambda seed: augment.scale_crop_params(
      seed, height=240, width=320, short_sides=(112, 128, 144), crop_size=112))
  shorts, ys, xs = set(), set(), set()
  for s in range(200):
    sh, sw, y, x = [int(v) for v in params(tf.constant([s, 0]))]
    assert sh in (112, 128, 144) and sw == int(np.floor(320 * sh / 240 + 0.5))
    assert 0 <= y <= sh - 112 and 0 <= x <= sw - 112
    shorts.add(sh)
    ys.add(y)
    xs.add(x)
  assert shorts == {112, 128, 144}
  assert 0 in xs and max(xs) >= 60   # the crop moves over the whole range
  # A rescaled side below the crop is raised to the crop size.
  sh, sw, y, x = [int(v) for v in augment.scale_crop_params(
      [0, 0], height=50, width=50, sizes=((20, 20),), crop_size=32)]
  assert (sh, sw, y, x) == (32, 32, 0, 0)


@pytest.mark.parametrize("reduced, short", [(True, 40), (1.5, 60)])   # 2.4x and 1.6x shrink
def test_reduced_decode_close_to_full_resolution(reduced, short):
  big = _smooth_frames(3, 96, 128, seed=1)
  idx = tf.constant([0, 1, 2])
  for s in range(3):
    kw = dict(height=96, width=128, short_sides=(short,), crop_size=32)
    exact = augment.decode_scale_crop(big, idx, [s, 1], **kw).numpy().astype(float)
    fast = augment.decode_scale_crop(big, idx, [s, 1], reduced_decode=reduced, **kw).numpy()
    assert not np.array_equal(exact, fast)   # the reduced path really ran
    # Box-filtered then bilinear vs plain bilinear: small differences only.
    assert np.abs(exact - fast).mean() < 4.0


def test_decode_scale_crop_seeded_and_static_shape(frames):
  indices = tf.constant([1, 3, 3])
  kw = dict(short_sides=(48, 56), crop_size=40)
  a = augment.decode_scale_crop(frames, indices, [5, 6], height=48, width=64, **kw)
  b = augment.decode_scale_crop(frames, indices, [5, 6], height=48, width=64, **kw)
  np.testing.assert_array_equal(a, b)
  others = [augment.decode_scale_crop(frames, indices, [s, 7], height=48, width=64, **kw)
            for s in range(4)]
  assert any(not np.array_equal(a, o) for o in others)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([], tf.int32),
                                tf.TensorSpec([], tf.int32)])
  def graph(f, h, w):
    return augment.decode_scale_crop(f, tf.zeros([7], tf.int32), [1, 1], height=h, width=w, **kw)

  spec = graph.get_concrete_function().structured_outputs
  assert spec.shape == (7, 40, 40, 3)


def test_decode_center_equals_full_decode_resize_crop(frames):
  indices = tf.constant([[0, 1, 2], [2, 3, 5]], tf.int32)   # overlapping clips share frame 2
  out = augment.decode_center(frames, indices, resize=(50, 36), crop_size=32)
  assert out.shape == (2, 3, 32, 32, 3) and out.dtype == tf.uint8
  for c in range(2):
    ref = _reference(frames, indices[c], 36, 50, (36 - 32) // 2, (50 - 32) // 2, 32)
    assert np.abs(out[c].numpy().astype(float) - ref).max() <= 1.0
  single = augment.decode_center(frames, indices[1], resize=(50, 36), crop_size=32)
  np.testing.assert_array_equal(single, out[1])


def test_decode_scale_crop_flip_is_mirrored_crop(frames):
  indices = tf.constant([0, 4])
  kw = dict(height=48, width=64, short_sides=(40, 70), crop_size=32)
  flips = 0
  for s in range(8):
    plain = augment.decode_scale_crop(frames, indices, [s, 2], **kw).numpy().astype(int)
    out = augment.decode_scale_crop(frames, indices, [s, 2], flip_prob=0.5, **kw).numpy()
    if np.array_equal(out, plain):
      continue
    flips += 1
    assert np.abs(out - plain[:, :, ::-1]).max() <= 1
  assert 1 <= flips <= 7
  always = augment.decode_scale_crop(frames, indices, [0, 2], flip_prob=1.0, **kw).numpy()
  plain = augment.decode_scale_crop(frames, indices, [0, 2], **kw).numpy().astype(int)
  assert np.abs(always - plain[:, :, ::-1]).max() <= 1


def test_random_flip():
  clip = tf.random.stateless_uniform([4, 5, 6, 3], [0, 0], 0, 255, tf.int32)
  clip = tf.cast(clip, tf.uint8)
  np.testing.assert_array_equal(augment.random_flip(clip, [1, 1], 1.0), clip[:, :, ::-1])
  np.testing.assert_array_equal(augment.random_flip(clip, [1, 1], 0.0), clip)
  flipped = [not np.array_equal(augment.random_flip(clip, [s, 0], 0.5), clip) for s in range(40)]
  assert 8 < sum(flipped) < 32


def _hsv(x):
  return tf.image.rgb_to_hsv(tf.cast(x, tf.float32) / 255.0).numpy()


def test_hue_saturation_bounds():
  rng = np.random.default_rng(0)
  # Saturated, bright colours so hue and saturation are well defined after uint8 rounding.
  base = rng.uniform(0, 1, (4, 8, 8, 3)) * [200, 60, 60] + [50, 20, 20]
  clip = tf.constant(base.astype(np.uint8))
  h0 = _hsv(clip)
  np.testing.assert_array_equal(
      color.hue_saturation(clip, [0, 0], prob=0.0, hue_range=12, saturation_range=0.1), clip)
  changed = 0
  for s in range(12):
    out = color.hue_saturation(clip, [s, 3], prob=1.0, hue_range=12, saturation_range=0.1)
    assert out.dtype == tf.uint8 and out.shape == clip.shape
    h1 = _hsv(out)
    dh = (h1[..., 0] - h0[..., 0] + 0.5) % 1.0 - 0.5          # signed, wrapped, in turns
    assert np.abs(dh).max() <= 12 / 180 + 0.01                 # 12 OpenCV units = 24 degrees
    assert np.std(dh) < 0.01                                   # one shift for the whole clip
    ratio = h1[..., 1].mean() / h0[..., 1].mean()
    assert np.exp(-0.1) - 0.03 <= ratio <= np.exp(0.1) + 0.03
    changed += abs(np.median(dh)) > 0.005
  assert changed >= 6


def test_hue_saturation_grey_unchanged():
  grey = tf.fill([2, 4, 4, 3], tf.constant(90, tf.uint8))
  out = color.hue_saturation(grey, [1, 2], prob=1.0, hue_range=12, saturation_range=0.1)
  np.testing.assert_array_equal(out, grey)


def _bc(clip, seed, **kw):
  args = dict(brightness_prob=0.0, brightness_range=30.0, contrast_prob=0.0,
              contrast_range=0.12, dynamic=False)
  args.update(kw)
  return color.brightness_contrast(clip, seed, **args).numpy().astype(float)


def test_brightness_static_and_dynamic_bounds():
  clip = tf.fill([16, 4, 4, 3], tf.constant(128, tf.uint8))
  np.testing.assert_array_equal(_bc(clip, [0, 0]), clip.numpy())
  dynamic_seen = False
  for s in range(10):
    shift = _bc(clip, [s, 1], brightness_prob=1.0)[:, 0, 0, 0] - 128
    assert np.all(np.abs(shift) <= 30.5) and np.ptp(shift) == 0   # static: one value
    shift = _bc(clip, [s, 1], brightness_prob=1.0, dynamic=True)[:, 0, 0, 0] - 128
    assert np.all(np.abs(shift) <= 30.5)
    # Piecewise linear over <= 2 segments: consecutive steps are bounded by the steepest
    # segment (60 grey levels over 7.5 frames) plus rounding.
    assert np.abs(np.diff(shift)).max() <= 60 / 7.5 + 1
    dynamic_seen |= np.ptp(shift) > 2
  assert dynamic_seen


def test_contrast_keeps_frame_mean_and_scales_spread():
  rng = np.random.default_rng(2)
  clip = tf.constant(rng.integers(80, 170, (16, 8, 8, 3)).astype(np.uint8))
  x = clip.numpy().astype(float)
  grey = lambda v: (v * [0.299, 0.587, 0.114]).sum(-1)
  for dynamic in (False, True):
    for s in range(6):
      out = _bc(clip, [s, 9], contrast_prob=1.0, dynamic=dynamic)
      np.testing.assert_allclose(grey(out).mean((1, 2)), grey(x).mean((1, 2)), atol=0.6)
      ratio = out.std((1, 2, 3)) / x.std((1, 2, 3))
      assert np.all(ratio >= np.exp(-0.12) - 0.02) and np.all(ratio <= np.exp(0.12) + 0.02)


def test_colour_ops_seeded_and_in_graph():
  clip = tf.cast(tf.random.stateless_uniform([8, 6, 6, 3], [1, 1], 0, 255, tf.int32), tf.uint8)
  kw = dict(brightness_prob=1.0, brightness_range=30.0, contrast_prob=1.0, contrast_range=0.12,
            dynamic=True)
  a = color.brightness_contrast(clip, [4, 4], **kw)
  np.testing.assert_array_equal(a, color.brightness_contrast(clip, [4, 4], **kw))
  assert not np.array_equal(a, color.brightness_contrast(clip, [5, 4], **kw))
  ds = tf.data.Dataset.from_tensors(clip).map(lambda c: color.hue_saturation(
      color.brightness_contrast(c, [1, 2], **kw), [3, 4], prob=1.0, hue_range=12,
      saturation_range=0.1))
  assert ds.element_spec.shape == (8, 6, 6, 3) and ds.element_spec.dtype == tf.uint8
