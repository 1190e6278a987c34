"""Shard reading and the finetuning / evaluation pipelines on the tiny converted dataset."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from ctp_tf import defaults
from ctp_tf.data import augment, finetune_input, reader, sampling


def test_list_shards_sorted(tiny_data_dir):
  paths = reader.list_shards(tiny_data_dir, "train")
  assert [os.path.basename(p) for p in paths] == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]


def test_missing_and_empty_dirs_are_named(tmp_path):
  missing = str(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="nope.*does not exist"):
    reader.list_shards(missing, "train")
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  with pytest.raises(FileNotFoundError, match=r"no 'train' shards in .*empty.*train-\*-of-\*"):
    reader.read_videos(empty, "train", shuffle=False, seed=0)


def test_incomplete_conversion_is_reported(tiny_data_dir, tmp_path):
  d = str(tmp_path / "partial")
  os.makedirs(d)
  shutil.copy(os.path.join(tiny_data_dir, "train-00000-of-00002.tfrecord"), d)
  with pytest.raises(FileNotFoundError, match="train-00001-of-00002"):
    reader.list_shards(d, "train")


def test_non_tfrecord_shard_is_named(tiny_data_dir, tmp_path):
  d = str(tmp_path / "bad")
  os.makedirs(d)
  shutil.copy(os.path.join(tiny_data_dir, "test-00000-of-00002.tfrecord"), d)
  bad = os.path.join(d, "test-00001-of-00002.tfrecord")
  with open(bad, "wb") as f:
    f.write(b"this is a JPEG, honest" * 10)
  with pytest.raises(ValueError, match="test-00001-of-00002.tfrecord is not a TFRecord"):
    reader.read_videos(d, "test", shuffle=False, seed=0)
  with open(bad, "wb") as f:
    f.write(b"short")
  with pytest.raises(ValueError, match="test-00001-of-00002.tfrecord is not a TFRecord"):
    reader.read_videos(d, "test", shuffle=False, seed=0)


def _indices(ds):
  return [int(v["video_index"]) for v in ds]


def test_read_videos_all_once_and_seeded(tiny_data_dir):
  plain = _indices(reader.read_videos(tiny_data_dir, "train", shuffle=False, seed=0))
  assert sorted(plain) == list(range(6))
  a = _indices(reader.read_videos(tiny_data_dir, "train", shuffle=True, seed=3))
  b = _indices(reader.read_videos(tiny_data_dir, "train", shuffle=True, seed=3))
  assert a == b and sorted(a) == list(range(6))
  orders = {tuple(_indices(reader.read_videos(tiny_data_dir, "train", shuffle=True, seed=s)))
            for s in range(4)}
  assert len(orders) > 1
  v = next(iter(reader.read_videos(tiny_data_dir, "train", shuffle=False, seed=0)))
  assert v["frames"].dtype == tf.string and int(v["num_frames"]) == v["frames"].shape[0]
  assert (int(v["height"]), int(v["width"])) == (48, 64)
  assert int(v["label"]) == int(v["video_index"]) % 2    # fixture: label = index % classes


@pytest.mark.parametrize("num_shards", [2, 3])   # file-level (2 files) and element-level
def test_read_videos_pipeline_sharding_partitions(tiny_data_dir, num_shards):
  parts = [_indices(reader.read_videos(tiny_data_dir, "train", shuffle=True, seed=1,
                                       num_shards=num_shards, shard_index=i))
           for i in range(num_shards)]
  flat = sum(parts, [])
  assert sorted(flat) == list(range(6)) and all(parts)


def test_read_videos_repeat(tiny_data_dir):
  ds = reader.read_videos(tiny_data_dir, "test", shuffle=True, seed=0, repeat=True)
  got = _indices(ds.take(12))
  # The video shuffle buffer spans epoch boundaries, so counts are only roughly equal.
  assert len(got) == 12 and set(got) == {0, 1, 2, 3}
  assert all(2 <= got.count(i) <= 4 for i in range(4))


def _small_config():
  c = defaults.finetune_data_config()
  c.clip_len = 8
  c.sizes = ((40, 30), (53, 40), (64, 48))
  c.crop_size = 24
  c.shuffle_buffer = 8
  return c


def test_finetune_dataset_shapes_labels_seeded(tiny_data_dir):
  c = _small_config()
  ds = finetune_input.finetune_dataset(tiny_data_dir, c, batch_size=4, seed=5)
  clip_spec, label_spec = ds.element_spec
  assert clip_spec.shape == (4, 8, 24, 24, 3) and clip_spec.dtype == tf.uint8
  assert label_spec.shape == (4,) and label_spec.dtype == tf.int32
  first = [(x.numpy(), y.numpy()) for x, y in ds.take(3)]
  again = [(x.numpy(), y.numpy())
           for x, y in finetune_input.finetune_dataset(tiny_data_dir, c, batch_size=4,
                                                       seed=5).take(3)]
  for (x1, y1), (x2, y2) in zip(first, again):
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert set(y1.tolist()) <= {0, 1}
  other = next(iter(finetune_input.finetune_dataset(tiny_data_dir, c, batch_size=4, seed=6)))
  assert not np.array_equal(other[0].numpy(), first[0][0])
  # Clips show the fixture's content: noise in 0..60 plus a bright square (colour jitter
  # moves levels by a bounded amount only).
  assert first[0][0].max() > 150 and np.median(first[0][0]) < 110


def test_finetune_dataset_one_pass_drops_remainder(tiny_data_dir):
  ds = finetune_input.finetune_dataset(tiny_data_dir, _small_config(), batch_size=4, seed=0,
                                       repeat=False)
  assert len([b for b in ds]) == 1      # 6 videos -> one full batch of 4


def test_eval_dataset(tiny_data_dir):
  ds = finetune_input.eval_dataset(tiny_data_dir, "test", num_clips=3, clip_len=8, stride=2,
                                   resize=(40, 30), crop_size=24, batch_size=3)
  spec = ds.element_spec
  assert spec["clips"].shape.as_list() == [None, 3, 8, 24, 24, 3]
  batches = list(ds)
  assert [b["clips"].shape[0] for b in batches] == [3, 1]
  index = np.concatenate([b["video_index"].numpy() for b in batches])
  label = np.concatenate([b["label"].numpy() for b in batches])
  assert sorted(index.tolist()) == [0, 1, 2, 3]
  np.testing.assert_array_equal(label, index % 2)
  again = np.concatenate([b["video_index"].numpy() for b in finetune_input.eval_dataset(
      tiny_data_dir, "test", num_clips=3, clip_len=8, stride=2, resize=(40, 30), crop_size=24,
      batch_size=3)])
  np.testing.assert_array_equal(index, again)
  # Same clips as the test sampler + centre decode applied directly.
  v = next(iter(reader.read_videos(tiny_data_dir, "test", shuffle=False, seed=0)))
  direct = augment.decode_center(v["frames"], sampling.test_indices(v["num_frames"], 3, 8, 2),
                                 resize=(40, 30), crop_size=24)
  np.testing.assert_array_equal(batches[0]["clips"][0], direct)
