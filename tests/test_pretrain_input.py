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
