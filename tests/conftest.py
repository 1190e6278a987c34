"""Shared fixtures: a tiny converted dataset made from numpy frames (no video files needed)."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")   # see ctp_tf/__init__.py
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_repo_module(relpath):
  """A module of the repository outside the package (`tools/`, `benchmarks/`), loaded by its
  file path (tests never edit sys.path)."""
  import importlib.util
  path = os.path.join(REPO, relpath)
  spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def write_tiny_shards(out_dir, *, num_classes=2, videos_per_split=None, frames=(12, 40),
                      height=48, width=64, seed=0):
  """Writes train/test shards of moving squares on noise; returns the frames written per split."""
  import tensorflow as tf
  from ctp_tf.data import shards

  videos_per_split = videos_per_split or {"train": 6, "test": 4}
  rng = np.random.default_rng(seed)
  os.makedirs(out_dir, exist_ok=True)
  written = {}
  meta = {"classes": [f"class{c}" for c in range(num_classes)], "splits": {}, "failures": []}
  for split, count in videos_per_split.items():
    records, vids = [], []
    for i in range(count):
      n = int(rng.integers(frames[0], frames[1] + 1))
      label = i % num_classes
      video = rng.integers(0, 60, size=(n, height, width, 3), dtype=np.uint8)
      for t in range(n):
        x = (5 + t * (2 if label == 0 else -2)) % (width - 12)
        video[t, 10:22, x:x + 12] = (200, (50 + 100 * label) % 256, 30)
      jpegs = [tf.io.encode_jpeg(f, quality=95).numpy() for f in video]
      ex = shards.make_sequence_example(
          jpegs, media_id=f"{split}_{i}", label_index=label, label_string=f"class{label}",
          height=height, width=width, frame_rate=25.0, index=i)
      records.append(ex.SerializeToString())
      vids.append(video)
    num_shards = 2 if count > 1 else 1
    for s in range(num_shards):
      shards.write_tfrecord_atomic(os.path.join(out_dir, shards.shard_name(split, s, num_shards)),
                                   records[s::num_shards])
    written[split] = vids
    meta["splits"][split] = {"videos": count, "frames": int(sum(len(v) for v in vids)),
                             "shards": num_shards}
  shards.write_dataset_json(out_dir, meta)
  return written


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tiny_shards"))
  write_tiny_shards(d)
  return d
