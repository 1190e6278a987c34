"""The pretraining pipeline on the tiny shards: shapes, dtypes, static shapes, reproducibility."""

import numpy as np
import pytest
import tensorflow as tf

from ctp_tf import defaults
from ctp_tf.data import pretrain_input


def _config():
  c = defaults.pretrain_config()
  c.data.clip_len = 8
  c.data.short_sides = (48, 56)
  c.data.crop_size = 48
  c.data.shuffle_buffer = 4
  c.synthesis.scales = (8, 12, 16)
  return c


def _take(ds, n):
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def test_batches_have_static_shapes_and_dtypes(tiny_data_dir):
  ds = pretrain_input.pretrain_dataset(tiny_data_dir, _config(), batch_size=4, seed=0)
  spec = ds.element_spec
  assert spec["clip"].shape == (4, 8, 48, 48, 3) and spec["clip"].dtype == tf.uint8
  assert spec["boxes"].shape == (4, 3, 8, 4) and spec["boxes"].dtype == tf.float32
  assert spec["weights"].shape == (4, 3, 8) and spec["weights"].dtype == tf.float32
  (batch,) = _take(ds, 1)
  boxes = batch["boxes"]
  assert np.all(boxes == np.round(boxes))
  assert np.all(boxes[..., :2] >= 0) and np.all(boxes[..., 2:] <= 48)
  assert np.all(boxes[..., 2:] > boxes[..., :2])
  np.testing.assert_array_equal(batch["weights"], 1.0)
  assert batch["clip"].std() > 5           # real pixels, not a blank placeholder


def test_same_seed_same_batches_other_seed_or_pipeline_differs(tiny_data_dir):
  cfg = _config()
  make = lambda **kw: pretrain_input.pretrain_dataset(tiny_data_dir, cfg, batch_size=3, **kw)
  a = _take(make(seed=1), 3)
  b = _take(make(seed=1), 3)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  c = _take(make(seed=2), 1)[0]
  assert not np.array_equal(a[0]["boxes"], c["boxes"])
  d = _take(make(seed=1, num_input_pipelines=2, input_pipeline_id=1), 1)[0]
  assert not np.array_equal(a[0]["boxes"], d["boxes"])


def test_one_pass_without_repeat_drops_the_partial_batch(tiny_data_dir):
  # The tiny train split holds 6 videos: one batch of 4, the remainder dropped.
  ds = pretrain_input.pretrain_dataset(tiny_data_dir, _config(), batch_size=4, seed=0,
                                       repeat=False)
  assert len(_take(ds, 10)) == 1


def test_bad_batch_size_is_rejected(tiny_data_dir):
  with pytest.raises(ValueError, match="batch_size"):
    pretrain_input.pretrain_dataset(tiny_data_dir, _config(), batch_size=0, seed=0)


def test_trajectory_figures_are_written(tiny_data_dir, tmp_path):
  from PIL import Image

  from ctp_tf import plots
  paths = plots.render_pretrain_examples(tiny_data_dir, _config(), str(tmp_path / "t.png"),
                                         gif_path=str(tmp_path / "t.gif"), num_clips=2, seed=3)
  png = Image.open(paths["png"])
  assert png.size[0] > 200 and png.size[1] > 100
  gif = Image.open(paths["gif"])
  assert gif.n_frames == 8                     # one GIF frame per video frame
  assert not list(tmp_path.glob("*.tmp-*"))    # written atomically


def test_batched_colour_matches_the_per_clip_ops():
  from ctp_tf.data import color
  rng = np.random.default_rng(0)
  clips = rng.integers(0, 256, (4, 6, 10, 12, 3), dtype=np.uint8)
  kw_hs = dict(prob=0.5, hue_range=12.0, saturation_range=0.3)
  kw_bc = dict(brightness_prob=0.6, brightness_range=30.0, contrast_prob=0.6,
               contrast_range=0.3, dynamic=True)
  seeds = [[s, 7] for s in range(4)]
  hs = [color.hue_saturation_params(s, **kw_hs) for s in seeds]
  bc = [color.brightness_contrast_params(s, 6, **kw_bc) for s in seeds]
  applied = [bool(h[0]) for h in hs]
  assert any(applied) and not all(applied)     # both branches exercised
  got = color.hue_saturation_batch(tf.constant(clips.astype(np.float32)),
                                   *[tf.stack(x) for x in zip(*hs)])
  got = color.brightness_contrast_batch(got, *[tf.stack(x) for x in zip(*bc)]).numpy()
  changed = 0
  for i, s in enumerate(seeds):
    want = color.brightness_contrast(color.hue_saturation(clips[i], s, **kw_hs), s, **kw_bc)
    diff = np.abs(got[i].astype(int) - want.numpy().astype(int))
    assert diff.max() <= 1 and np.mean(diff > 0) < 0.01, (i, diff.max(), np.mean(diff > 0))
    changed += np.any(want.numpy() != clips[i])
  assert changed >= 2


def test_example_equals_per_clip_synthesis_then_colour(tiny_data_dir):
  # The batched stages keep the rules: the same as the per-clip ops in REFERENCE order.
  from ctp_tf.data import augment, color, reader, sampling
  from ctp_tf.data.synthesis import synthesize_trajectories
  cfg = _config()
  cfg.augment.hue_sat_prob = 0.5
  data, aug = cfg.data, cfg.augment
  video = next(iter(reader.read_videos(tiny_data_dir, "train", shuffle=False, seed=0)))
  for k in range(3):
    seed = tf.constant([k, 11], tf.int32)
    got = pretrain_input.pretrain_example(video, seed, cfg)
    s = tf.random.experimental.stateless_split(seed, num=6)
    idx = sampling.train_indices(video["num_frames"], s[0], 8, tuple(data.strides),
                                 temporal_jitter=bool(data.temporal_jitter))
    shape = tf.io.extract_jpeg_shape(video["frames"][0])
    clip = augment.decode_scale_crop(video["frames"], idx, s[1], height=shape[0],
                                     width=shape[1], short_sides=tuple(data.short_sides),
                                     crop_size=48)
    clip = augment.random_flip(clip, s[2], data.flip_prob)
    out = synthesize_trajectories(clip, s[3], cfg.synthesis)
    clip = color.hue_saturation(out["clip"], s[4], prob=aug.hue_sat_prob,
                                hue_range=aug.hue_range, saturation_range=aug.saturation_range)
    clip = color.brightness_contrast(
        clip, s[5], brightness_prob=aug.brightness_prob, brightness_range=aug.brightness_range,
        contrast_prob=aug.contrast_prob, contrast_range=aug.contrast_range,
        dynamic=bool(aug.dynamic), dynamic_keyframe_probs=tuple(aug.dynamic_keyframe_probs))
    np.testing.assert_array_equal(got["boxes"].numpy(), out["boxes"].numpy())
    diff = np.abs(got["clip"].numpy().astype(int) - clip.numpy().astype(int))
    assert diff.max() <= 1 and np.mean(diff > 0) < 0.01
