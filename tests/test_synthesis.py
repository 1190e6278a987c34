"""CtP trajectory synthesis: the statistics of the trajectories and the pasted pixels."""

import numpy as np
import pytest
import tensorflow as tf

from ctp_tf import defaults
from ctp_tf.data import synthesis

T, H, W = 16, 112, 112
NUM_CLIPS = 1200          # x 3 trajectories = 3600 sampled trajectories


def _trajectories(config, num_clips=NUM_CLIPS, seed=(7, 11), size=(T, H, W)):
  """Internals of many clips' trajectories at once (no pasting: only the box maths)."""
  t, h, w = size
  d = synthesis.num_random_columns(config, t)
  u = tf.random.stateless_uniform([num_clips, config.num_trajectories, d], seed=seed)
  out = tf.function(lambda u: synthesis._trajectories(u, config, t, h, w))(u)
  return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def seed_traj():
  return _trajectories(defaults.synthesis_config())


@pytest.fixture(scope="module")
def public_traj():
  return _trajectories(defaults.public_code_synthesis_config(), seed=(3, 5))


def test_start_boxes_follow_scales_ratios_and_jitter(seed_traj):
  cfg = defaults.synthesis_config()
  anchors = np.array([(s * np.sqrt(r), s / np.sqrt(r)) for r in cfg.ratios for s in cfg.scales])
  a = seed_traj["anchor"].reshape(-1)
  wh = seed_traj["start_wh"].reshape(-1, 2)
  ratio = wh / anchors[a]
  unclipped = (wh[:, 0] < W - 1) & (wh[:, 1] < H - 1)
  j = cfg.size_jitter
  assert np.all(ratio[unclipped] >= np.exp(-j) - 1e-5)
  assert np.all(ratio[unclipped] <= np.exp(j) + 1e-5)
  # The jitter really spans its range, independently per side.
  assert ratio[unclipped].min() < np.exp(-0.9 * j) and ratio[unclipped].max() > np.exp(0.9 * j)
  assert abs(np.corrcoef(np.log(ratio[unclipped]).T)[0, 1]) < 0.1
  # Every anchor (scale x ratio) is drawn about equally often.
  counts = np.bincount(a, minlength=len(anchors))
  expected = len(a) / len(anchors)
  assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
  # The start box lies inside the frame.
  ctr = seed_traj["start_ctr"].reshape(-1, 2)
  assert np.all(ctr - wh / 2 >= -1e-4) and np.all(ctr + wh / 2 <= np.array([W, H]) + 1e-4)


@pytest.mark.parametrize("kind", ["loc", "size", "opacity"])
@pytest.mark.parametrize("which", ["seed", "public"])
def test_key_frames_follow_configured_distribution(kind, which, seed_traj, public_traj):
  traj = seed_traj if which == "seed" else public_traj
  cfg = defaults.synthesis_config() if which == "seed" else defaults.public_code_synthesis_config()
  times = traj[f"{kind}_times"].reshape(-1, traj[f"{kind}_times"].shape[-1])
  count = traj[f"{kind}_count"].reshape(-1)
  freq = np.bincount(count - 2, minlength=len(cfg.inner_keyframe_probs)) / len(count)
  np.testing.assert_allclose(freq, cfg.inner_keyframe_probs, atol=0.035)
  for tk, c in zip(times, count):
    keys = tk[:c]
    assert keys[0] == 0 and keys[-1] == T - 1
    assert np.all(np.diff(keys) > 0)
    assert np.all(tk[c:] == T - 1)
    k = c - 2
    avg = T / (k + 1)
    jit = np.floor(avg * cfg.keyframe_jitter)
    nominal = np.floor(avg * np.arange(1, k + 1))
    assert np.all(np.abs(keys[1:-1] - nominal) <= jit)


def test_location_and_size_key_frames_are_independent(seed_traj):
  same = np.mean(np.all(seed_traj["loc_times"] == seed_traj["size_times"], -1))
  # With 3 equally likely counts and jitter, equal sets would be rare if independent.
  assert same < 0.3


@pytest.mark.parametrize("which", ["seed", "public"])
def test_speed_and_scale_constraints_between_key_frames(which, seed_traj, public_traj):
  traj = seed_traj if which == "seed" else public_traj
  cfg = defaults.synthesis_config()
  dt = np.diff(traj["loc_times"], axis=-1)[..., None].astype(np.float64)
  move = np.abs(np.diff(traj["key_ctr"], axis=-2))
  assert np.all(move <= cfg.speed * dt + 1e-3)
  assert np.max(move / np.maximum(cfg.speed * dt, 1e-9)) > 0.97   # the bound is reached
  wh0 = traj["start_wh"][..., None, :]
  ctr = traj["key_ctr"]
  assert np.all(ctr >= wh0 / 2 - 1e-3) and np.all(ctr <= np.array([W, H]) - wh0 / 2 + 1e-3)
  dts = np.diff(traj["size_times"], axis=-1)[..., None].astype(np.float64)
  change = np.abs(np.diff(np.log(traj["key_wh"]), axis=-2))
  assert np.all(change <= cfg.scale_rate * dts + 1e-5)
  assert np.max(change / np.maximum(cfg.scale_rate * dts, 1e-9)) > 0.97


def _numpy_interpolate(values, times, count, modes):
  out = np.zeros((T,) + values.shape[1:])
  for j in range(count - 1):
    p, q = times[j], times[j + 1]
    r = (np.arange(p, q + 1) - p) / (q - p)
    if modes is not None and modes[j] == 1:
      r = r ** 2
    elif modes is not None and modes[j] == 2:
      r = 1 - (1 - r) ** 2
    out[p:q + 1] = values[j] + (values[j + 1] - values[j]) * r[:, None]
  return out


@pytest.mark.parametrize("which", ["seed", "public"])
def test_in_between_frames_lie_on_the_interpolation(which, seed_traj, public_traj):
  traj = seed_traj if which == "seed" else public_traj
  cfg = defaults.synthesis_config() if which == "seed" else defaults.public_code_synthesis_config()
  flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in traj.items()}
  # Interpolation modes follow their probabilities (over real segments only).
  real = np.arange(flat["loc_mode"].shape[-1])[None] < (flat["loc_count"] - 1)[:, None]
  freq = np.bincount(flat["loc_mode"][real], minlength=3) / real.sum()
  np.testing.assert_allclose(freq, cfg.interpolation_probs, atol=0.03)
  for i in range(0, len(flat["ctr"]), 7):
    ctr = _numpy_interpolate(flat["key_ctr"][i], flat["loc_times"][i], flat["loc_count"][i],
                             flat["loc_mode"][i])
    np.testing.assert_allclose(flat["ctr"][i], ctr, atol=1e-3)
    wh = _numpy_interpolate(flat["key_wh"][i], flat["size_times"][i], flat["size_count"][i],
                            flat["size_mode"][i])
    np.testing.assert_allclose(flat["wh"][i], wh, rtol=1e-5, atol=1e-3)


def test_boxes_are_whole_pixels_inside_the_frame(seed_traj):
  boxes = seed_traj["boxes"]
  assert np.all(boxes == np.round(boxes))
  assert np.all(boxes[..., 0] >= 0) and np.all(boxes[..., 1] >= 0)
  assert np.all(boxes[..., 2] <= W) and np.all(boxes[..., 3] <= H)
  assert np.all(boxes[..., 2] > boxes[..., 0]) and np.all(boxes[..., 3] > boxes[..., 1])
  # Away from the border they are the rounded interpolated boxes.
  ctr, wh = seed_traj["ctr"], seed_traj["wh"]
  want = np.round(np.concatenate([ctr - wh / 2, ctr + wh / 2], -1))
  inside = np.all((want[..., :2] >= 0) & (want[..., 2:] <= [W, H]), -1)
  assert inside.mean() > 0.9
  # Boxes may differ by one pixel where float32 rounding meets an exact .5.
  assert np.abs(boxes[inside] - want[inside]).max() <= 1
  assert np.mean(boxes[inside] == want[inside]) > 0.999


def test_visibility_frequency_and_always_visible_frames(seed_traj):
  vis = seed_traj["visible"].reshape(-1, T)
  source = seed_traj["source"].reshape(-1)
  assert np.all(vis[:, 0])
  assert np.all(vis[np.arange(len(vis)), source])
  other = np.ones_like(vis)
  other[:, 0] = False
  other[np.arange(len(vis)), source] = False
  rate = vis[other].mean()
  assert abs(rate - 0.8) < 0.015
  assert np.all(np.abs(np.bincount(source, minlength=T) / len(source) - 1 / T) < 0.025)
  opacity = seed_traj["opacity"]
  assert opacity.min() >= 0.8 - 1e-6 and opacity.max() <= 1.0 + 1e-6


def test_visible_prob_one_and_speed_zero():
  cfg = defaults.synthesis_config()
  cfg.visible_prob = 1.0
  cfg.speed = 0.0
  cfg.scale_rate = 0.0
  traj = _trajectories(cfg, num_clips=100)
  assert np.all(traj["visible"])
  boxes = traj["boxes"]
  assert np.all(boxes == boxes[:, :, :1])           # static patches


def _paste_config(**kw):
  cfg = defaults.synthesis_config()
  cfg.mask_probs = (1.0, 0.0, 0.0)
  cfg.soft_edge_prob = 0.0
  cfg.opacity_range = (1.0, 1.0)
  cfg.visible_prob = 0.5
  cfg.scales = (8, 12, 16, 24)
  for k, v in kw.items():
    setattr(cfg, k, v)
  return cfg


def _random_clip(rng, t=8, h=40, w=56):
  # Smooth content plus noise, so that resizing errors would show.
  base = rng.integers(0, 256, (t, h // 4, w // 4, 3)).astype(np.float32)
  smooth = tf.image.resize(base, (h, w)).numpy()
  return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("num_trajectories", [1, 3])
def test_opaque_rectangles_equal_the_resized_source_patch(num_trajectories):
  cfg = _paste_config(num_trajectories=num_trajectories)
  rng = np.random.default_rng(0)
  fn = tf.function(lambda c, s: synthesis.synthesize_trajectories(c, s, cfg, return_internals=True))
  checked_pixels = 0
  for i in range(12):
    clip = _random_clip(rng)
    out = {k: v.numpy() for k, v in fn(clip, tf.constant([i, 1])).items()}
    boxes = out["boxes"].astype(int)
    area = (boxes[..., 2] - boxes[..., 0]).mean(-1) * (boxes[..., 3] - boxes[..., 1]).mean(-1)
    order = np.argsort(-area, kind="stable")
    expected = clip.astype(np.float32)
    touched = np.zeros(clip.shape[:3], bool)
    for n in order:            # larger first: later (smaller) patches overwrite
      s = out["source"][n]
      x1, y1, x2, y2 = boxes[n, s]
      crop = clip[s, y1:y2, x1:x2].astype(np.float32)
      for t in range(clip.shape[0]):
        if not out["visible"][n, t]:
          continue
        bx1, by1, bx2, by2 = boxes[n, t]
        patch = tf.image.resize(crop, (by2 - by1, bx2 - bx1), method="bilinear").numpy()
        expected[t, by1:by2, bx1:bx2] = patch
        touched[t, by1:by2, bx1:bx2] = True
    diff = np.abs(out["clip"].astype(np.float32) - np.round(expected))
    assert diff[touched].max() <= 1.0, diff[touched].max()
    np.testing.assert_array_equal(out["clip"][~touched], clip[~touched])
    for t in range(clip.shape[0]):
      if not out["visible"][:, t].any():
        np.testing.assert_array_equal(out["clip"][t], clip[t])
    checked_pixels += touched.sum()
  assert checked_pixels > 1000


def test_soft_masks_only_touch_visible_boxes_and_blend():
  cfg = defaults.synthesis_config()
  cfg.scales = (8, 12, 16, 24)
  rng = np.random.default_rng(1)
  fn = tf.function(lambda c, s: synthesis.synthesize_trajectories(c, s, cfg, return_internals=True))
  blended = 0
  for i in range(10):
    clip = _random_clip(rng)
    out = {k: v.numpy() for k, v in fn(clip, tf.constant([i, 2])).items()}
    inside = np.zeros(clip.shape[:3], bool)
    for n in range(cfg.num_trajectories):
      for t in range(clip.shape[0]):
        if out["visible"][n, t]:
          x1, y1, x2, y2 = out["boxes"][n, t].astype(int)
          inside[t, y1:y2, x1:x2] = True
    np.testing.assert_array_equal(out["clip"][~inside], clip[~inside])
    blended += np.sum(out["clip"][inside] != clip[inside])
  assert blended > 0


def test_determinism_shapes_and_dtypes():
  clip = _random_clip(np.random.default_rng(2), t=16, h=64, w=64)
  a = synthesis.synthesize_trajectories(clip, [1, 2])
  b = synthesis.synthesize_trajectories(clip, tf.constant([1, 2]))
  c = synthesis.synthesize_trajectories(clip, [1, 3])
  assert set(a) == {"clip", "boxes", "visible", "weights"}
  assert a["clip"].dtype == tf.uint8 and a["clip"].shape == (16, 64, 64, 3)
  assert a["boxes"].dtype == tf.float32 and a["boxes"].shape == (3, 16, 4)
  assert a["visible"].dtype == tf.bool and a["visible"].shape == (3, 16)
  assert a["weights"].dtype == tf.float32 and a["weights"].shape == (3, 16)
  np.testing.assert_array_equal(a["weights"], 1.0)
  for k in a:
    np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
  assert not np.array_equal(a["boxes"].numpy(), c["boxes"].numpy())
  assert not np.array_equal(a["clip"].numpy(), c["clip"].numpy())


@pytest.mark.parametrize("t", [2, 3, 4])
def test_clips_shorter_than_the_key_frame_slots(t):
  # The default config has up to 5 key frames; a 2-4 frame clip must still synthesise (it
  # failed with "Dimensions must be equal, 4 and 3" when the sorted times were cut to k_max).
  clip = _random_clip(np.random.default_rng(3), t=t, h=48, w=48)
  out = synthesis.synthesize_trajectories(clip, [4, 5], return_internals=True)
  assert out["clip"].shape == (t, 48, 48, 3) and out["boxes"].shape == (3, t, 4)
  times = out["loc_times"].numpy()
  assert (times[..., 0] == 0).all() and (times[..., -1] == t - 1).all()
  assert (np.diff(times, axis=-1) >= 0).all()
  boxes = out["boxes"].numpy()
  assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()


def test_works_in_parallel_tf_data_map_with_static_shapes():
  cfg = defaults.synthesis_config()
  cfg.scales = (8, 16)
  clips = np.stack([_random_clip(np.random.default_rng(i), t=8, h=32, w=48) for i in range(6)])

  def fn(clip, seed):
    return synthesis.synthesize_trajectories(clip, seed, cfg)

  seeds = tf.random.stateless_uniform([6, 2], [0, 0], maxval=2**31 - 1, dtype=tf.int32)
  ds = tf.data.Dataset.from_tensor_slices((clips, seeds)).map(fn, num_parallel_calls=4)
  assert ds.element_spec["clip"].shape == (8, 32, 48, 3)
  assert ds.element_spec["boxes"].shape == (3, 8, 4)
  got = list(ds.batch(6, drop_remainder=True))[0]
  again = list(ds.batch(6, drop_remainder=True))[0]
  for k in got:
    np.testing.assert_array_equal(got[k].numpy(), again[k].numpy())
  # The batched form with the per-clip random numbers gives exactly the per-clip results.
  u = tf.stack([synthesis.draw_randoms(s, cfg, 8) for s in seeds])
  batched = tf.function(lambda c, u: synthesis.synthesize_batch(c, u, cfg))(clips, u)
  for k in ("boxes", "visible", "weights"):
    np.testing.assert_array_equal(got[k].numpy(), batched[k].numpy())
  # The batch is pasted clip by clip: the same computation, the same pixels.
  np.testing.assert_array_equal(got["clip"].numpy(), batched["clip"].numpy())


def test_bad_config_and_clip_are_rejected():
  cfg = defaults.synthesis_config()
  cfg.mask_probs = (0.5, 0.5, 0.5)
  with pytest.raises(ValueError, match="mask_probs"):
    synthesis.synthesize_trajectories(np.zeros((4, 8, 8, 3), np.uint8), [0, 0], cfg)
  with pytest.raises(ValueError, match="T, H, W, 3"):
    synthesis.synthesize_trajectories(np.zeros((8, 8, 3), np.uint8), [0, 0])


@pytest.mark.parametrize("mask,opacity", [("ellipse", 1.0), ("rhombus", 1.0), ("rect", 0.5)])
def test_mask_shapes_and_opacity(mask, opacity):
  probs = {"rect": (1.0, 0.0, 0.0), "ellipse": (0.0, 1.0, 0.0), "rhombus": (0.0, 0.0, 1.0)}
  cfg = _paste_config(num_trajectories=1, mask_probs=probs[mask], visible_prob=1.0,
                      opacity_range=(opacity, opacity), scales=(20, 24))
  rng = np.random.default_rng(5)
  fn = tf.function(lambda c, s: synthesis.synthesize_trajectories(c, s, cfg, return_internals=True))
  for i in range(4):
    clip = _random_clip(rng)
    out = {k: v.numpy() for k, v in fn(clip, tf.constant([i, 9])).items()}
    s = out["source"][0]
    x1, y1, x2, y2 = out["boxes"][0, s].astype(int)
    crop = clip[s, y1:y2, x1:x2].astype(np.float32)
    for t in range(clip.shape[0]):
      bx1, by1, bx2, by2 = out["boxes"][0, t].astype(int)
      patch = tf.image.resize(crop, (by2 - by1, bx2 - bx1)).numpy()
      got = out["clip"][t, by1:by2, bx1:bx2].astype(np.float32)
      orig = clip[t, by1:by2, bx1:bx2].astype(np.float32)
      cy, cx = (by2 - by1) // 2, (bx2 - bx1) // 2
      want_centre = opacity * patch[cy, cx] + (1 - opacity) * orig[cy, cx]
      assert np.abs(got[cy, cx] - want_centre).max() <= 1.0
      if mask != "rect":   # corners lie outside ellipses and rhombi
        np.testing.assert_array_equal(got[0, 0], orig[0, 0])
        np.testing.assert_array_equal(got[-1, -1], orig[-1, -1])


@pytest.mark.parametrize("kind", ["loc", "size", "opacity"])
def test_key_frame_jitter_spans_both_signs_uniformly(kind, seed_traj):
  """Each inner key frame moves by U{-j..+j} frames around its even spacing, j =
  floor(T/(k+1) * keyframe_jitter): every offset of both signs occurs, about equally often."""
  cfg = defaults.synthesis_config()
  times = seed_traj[f"{kind}_times"].reshape(-1, seed_traj[f"{kind}_times"].shape[-1])
  count = seed_traj[f"{kind}_count"].reshape(-1)
  for k in (1, 2, 3):
    rows = times[count == k + 2]
    avg = T / (k + 1)
    jit = int(np.floor(avg * cfg.keyframe_jitter))
    assert jit >= 1
    offsets = (rows[:, 1:k + 1] - np.floor(avg * np.arange(1, k + 1))).astype(int).ravel()
    values, freq = np.unique(offsets, return_counts=True)
    np.testing.assert_array_equal(values, np.arange(-jit, jit + 1), err_msg=f"k={k}")
    expected = len(offsets) / (2 * jit + 1)
    assert np.all(np.abs(freq - expected) < 5 * np.sqrt(expected)), (k, freq)


def _alpha_formula(mask, soft, d0, box, height, width):
  """REFERENCE.md's alpha mask of one box on the frame grid, from pixel centres: normalised
  offsets n = (p + 0.5 - p1) / side - 0.5; rectangle max(|nx|, |ny|), ellipse
  sqrt(nx^2 + ny^2), rhombus |nx| + |ny|; inside the shape where that distance < 0.5; a soft
  edge falls linearly from 1 at d0 to 0 at 0.5."""
  x1, y1, x2, y2 = box
  ny = np.abs((np.arange(height) + 0.5 - y1) / (y2 - y1) - 0.5)[:, None]
  nx = np.abs((np.arange(width) + 0.5 - x1) / (x2 - x1) - 0.5)[None, :]
  dist = {"rect": np.maximum(nx, ny), "ellipse": np.sqrt(nx ** 2 + ny ** 2),
          "rhombus": nx + ny}[mask]
  in_box = (nx < 0.5) & (ny < 0.5)
  alpha = (in_box & (dist < 0.5)).astype(np.float64)
  if soft:
    alpha *= np.clip((0.5 - dist) / (0.5 - d0), 0.0, 1.0)
  return alpha


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("mask", ["rect", "ellipse", "rhombus"])
def test_alpha_masks_match_their_formula_pixel_by_pixel(mask, soft):
  """A white source frame pasted onto black frames shows each frame's alpha mask directly
  (opacity 1, always visible): compared with the formula on every pixel, so swapped shapes,
  missing soft edges or a wrong falloff profile fail."""
  t, h, w = 6, 40, 48
  probs = {"rect": (1.0, 0.0, 0.0), "ellipse": (0.0, 1.0, 0.0), "rhombus": (0.0, 0.0, 1.0)}
  cfg = _paste_config(num_trajectories=1, mask_probs=probs[mask], visible_prob=1.0,
                      soft_edge_prob=1.0 if soft else 0.0, scales=(24, 30), ratios=(0.6, 1.5))
  fn = tf.function(lambda c, s: synthesis.synthesize_trajectories(c, s, cfg, return_internals=True))
  partial = 0
  for i in range(3):
    seed = tf.constant([i, 17])
    traj = {k: v.numpy() for k, v in fn(np.zeros((t, h, w, 3), np.uint8), seed).items()}
    s = int(traj["source"][0])
    clip = np.zeros((t, h, w, 3), np.uint8)
    clip[s] = 255
    out = fn(clip, seed)["clip"].numpy().astype(np.float64)
    assert int(traj["mask"][0]) == ("rect", "ellipse", "rhombus").index(mask)
    assert bool(traj["soft"][0]) == soft
    d0 = float(traj["d0"][0])
    assert cfg.soft_edge_range[0] <= d0 <= cfg.soft_edge_range[1]
    for f in range(t):
      if f == s:
        continue
      box = traj["boxes"][0, f]
      want = _alpha_formula(mask, soft, d0, box, h, w)
      for c in range(3):
        np.testing.assert_allclose(out[f, ..., c], np.round(255 * want), atol=1.0,
                                   err_msg=f"seed {i} frame {f}")
      if not soft:   # the other shapes differ from this one on interior pixels of this box
        for other in {"rect", "ellipse", "rhombus"} - {mask}:
          assert np.sum(_alpha_formula(other, False, d0, box, h, w) != want) >= 8, other
      partial += np.sum((want > 0.05) & (want < 0.95))
  if soft:
    assert partial > 50   # the falloff covers many pixels, so its profile is really checked




def test_overlapping_layers_composite_like_the_accelerator_stage():
  """Large, always visible, half-transparent soft patches that overlap a lot. The map pastes
  layer after layer in windows; `synthesis_stage.paste_patches` (the accelerator placement)
  renders every layer on the whole frame and sums them weighted by the transmittance of the
  layers pasted later. Two independent formulas of "over" in paste order: they agree only if
  the overlaps are handled right (a layer blended onto the original clip instead of the clip
  so far moves the overlapping pixels by many grey levels). The batch equals clip by clip."""
  from ctp_tf.layers import synthesis_stage
  cfg = defaults.synthesis_config()
  cfg.scales, cfg.ratios = (20,), (1.0,)
  cfg.visible_prob, cfg.opacity_range, cfg.soft_edge_prob = 1.0, (0.5, 0.6), 0.5
  t, h, w = 4, 24, 24
  clips = np.stack([_random_clip(np.random.default_rng(i), t=t, h=h, w=w) for i in range(4)])
  u = tf.stack([synthesis.draw_randoms(tf.constant([i, 5]), cfg, t) for i in range(4)])
  batched = synthesis.synthesize_batch(clips, u, cfg)
  traj = synthesis.trajectory_batch(u, cfg, t, h, w)
  want = synthesis_stage.paste_patches(clips, traj["boxes"], traj["source"], traj["mask"],
                                       traj["soft"], traj["d0"], traj["alpha"])
  boxes = traj["boxes"].numpy()                                      # [B, N, T, 4]
  x1, y1, x2, y2 = np.moveaxis(boxes, -1, 0)
  overlap = 0
  for i in range(3):
    for j in range(i + 1, 3):
      iw = np.minimum(x2[:, i], x2[:, j]) - np.maximum(x1[:, i], x1[:, j])
      ih = np.minimum(y2[:, i], y2[:, j]) - np.maximum(y1[:, i], y1[:, j])
      overlap += np.sum(np.clip(iw, 0, None) * np.clip(ih, 0, None))
  assert overlap > 500, overlap   # the case really has overlapping layers
  diff = np.abs(batched["clip"].numpy().astype(int) - np.asarray(want))
  assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3, (diff.max(), np.mean(diff > 0))
  for i in range(4):
    one = synthesis.synthesize_trajectories(clips[i], tf.constant([i, 5]), cfg)
    np.testing.assert_array_equal(one["boxes"].numpy(), boxes[i])
    np.testing.assert_array_equal(one["clip"].numpy(), batched["clip"][i].numpy())


def _composite_float32(clip, out):
  """The map's pixels from its boxes and paste parameters, in float32 NumPy with the map's own
  operations in the same order (so equal bit for bit): per layer in paste order and per frame,
  the source patch resized (half-pixel bilinear, columns then rows, taps clamped to the patch),
  the alpha mask from pixel centres, and "over" onto the float clip so far; rounded once."""
  f32 = np.float32
  boxes = out["boxes"].astype(int)
  bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
  order = np.argsort(-(bw.mean(-1).astype(f32) * bh.mean(-1).astype(f32)), kind="stable")
  res = clip.astype(f32)

  def taps(n, src, extent):
    pos = np.arange(n, dtype=f32) + f32(0.5)
    c = pos * (f32(src) / f32(extent)) - f32(0.5)
    c0 = np.floor(c)
    i0 = np.clip(c0, 0, src - 1).astype(int)
    i1 = np.clip(c0 + 1, 0, src - 1).astype(int)
    return i0, i1, c - c0, np.abs(pos / f32(extent) - f32(0.5))

  for k in order:
    s = out["source"][k]
    sx1, sy1, sx2, sy2 = boxes[k, s]
    patch = clip[s, sy1:sy2, sx1:sx2].astype(f32)
    den = f32(0.5) - out["d0"][k] if out["soft"][k] else f32(1e-30)
    for t in range(clip.shape[0]):
      x1, y1, x2, y2 = boxes[k, t]
      r0, r1, fy, ny = taps(y2 - y1, sy2 - sy1, y2 - y1)
      c0, c1, fx, nx = taps(x2 - x1, sx2 - sx1, x2 - x1)
      left, right = patch[:, c0], patch[:, c1]                      # [sh, bw, 3]
      cols = left + (right - left) * fx[None, :, None]
      window = cols[r0] + (cols[r1] - cols[r0]) * fy[:, None, None]
      dy, dx = ny[:, None], nx[None, :]
      dist = [np.maximum(dx, dy), np.sqrt(dx * dx + dy * dy), dx + dy][out["mask"][k]]
      vis = f32(out["visible"][k, t]) * out["opacity"][k, t]
      alpha = (np.clip((f32(0.5) - dist) / den, f32(0), f32(1)) * vis)[..., None]
      under = res[t, y1:y2, x1:x2]
      res[t, y1:y2, x1:x2] = under + (window - under) * alpha
  return np.round(res).astype(np.uint8)


@pytest.mark.parametrize("size", [(6, 40, 48), (5, 23, 17)])
def test_pixels_equal_a_float32_composite_bit_for_bit(size):
  """Large, overlapping, half-transparent patches of every shape, many at the right and bottom
  edges (where the map's window is moved back into the frame): the map's pixels equal a
  straightforward per-frame NumPy composite exactly, so a window offset, tap, mask or paste
  order error anywhere shows, not only beyond a grey level."""
  cfg = defaults.synthesis_config()
  cfg.scales, cfg.ratios = (18, 26), (0.7, 1.4)
  cfg.opacity_range, cfg.soft_edge_prob = (0.5, 0.9), 0.5
  cfg.mask_probs = (0.34, 0.33, 0.33)
  t, h, w = size
  fn = tf.function(lambda c, s: synthesis.synthesize_trajectories(c, s, cfg, return_internals=True))
  rng = np.random.default_rng(3)
  moved, masks = 0, set()
  for i in range(12):
    clip = _random_clip(rng, t=t, h=h, w=w)
    out = {k: v.numpy() for k, v in fn(clip, tf.constant([i, 23])).items()}
    np.testing.assert_array_equal(out["clip"], _composite_float32(clip, out), err_msg=f"clip {i}")
    x1, y1, x2, y2 = np.moveaxis(out["boxes"], -1, 0)                # [N, T]
    win_w, win_h = (x2 - x1).max(-1, keepdims=True), (y2 - y1).max(-1, keepdims=True)
    moved += np.sum((x1 + win_w > w) | (y1 + win_h > h))   # windows moved back into the frame
    masks |= set(out["mask"].tolist())
  assert moved >= 8 and masks == {0, 1, 2}   # those windows and all three shapes were checked
