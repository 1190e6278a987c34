"""The demo's paired comparisons and its per-seed splits (fast: no training)."""

import numpy as np
import pytest

from ctp_tf.demo import splits as demo_splits, stats as demo_stats


def test_t_interval_against_hand_computed_values():
  # n = 2, diffs 0.1 and 0.3: mean 0.2, sd 0.141421, t(0.975, 1) = 12.706,
  # half width 12.706 * 0.141421 / sqrt(2) = 1.2706.
  mean, lo, hi = demo_stats.paired_interval([0.5, 0.7], [0.4, 0.4])
  assert mean == pytest.approx(0.2)
  assert lo == pytest.approx(0.2 - 1.2706, abs=2e-4)
  assert hi == pytest.approx(0.2 + 1.2706, abs=2e-4)
  # n = 3, diffs 0.1, 0.2, 0.3: sd 0.1, t(0.975, 2) = 4.303, half 4.303 * 0.1 / sqrt(3) = 0.24843.
  mean, lo, hi = demo_stats.paired_interval([0.6, 0.7, 0.8], [0.5, 0.5, 0.5])
  assert (mean, lo, hi) == pytest.approx((0.2, 0.2 - 0.24843, 0.2 + 0.24843), abs=2e-4)
  # n = 5, diffs 1, 2, 3, 4, 5: sd 1.5811, t(0.975, 4) = 2.776, half 2.776 * 1.5811 / 2.2361.
  mean, lo, hi = demo_stats.paired_interval([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
  assert (lo, hi) == pytest.approx((3 - 1.9629, 3 + 1.9629), abs=2e-3)


def test_zero_variance_and_single_seed():
  # Zero variance: the interval is the point; its sign decides.
  assert demo_stats.paired_interval([0.5, 0.6], [0.4, 0.5]) == pytest.approx((0.1, 0.1, 0.1))
  c = demo_stats.paired_comparison("x", "top1", [0.5, 0.6], [0.4, 0.5], seeds=[0, 1])
  assert c["verdict"] == "ctp better" and c["wins"] == 2
  c = demo_stats.paired_comparison("x", "top1", [0.4, 0.5], [0.5, 0.6], seeds=[0, 1])
  assert c["verdict"] == "baseline better" and c["wins"] == 0
  c = demo_stats.paired_comparison("x", "top1", [0.5, 0.5], [0.5, 0.5], seeds=[0, 1])
  assert c["verdict"] == "undecided" and c["diff_ci95"] == [0.0, 0.0]
  # One seed: no interval, never a verdict either way.
  c = demo_stats.paired_comparison("x", "top1", [0.9], [0.1], seeds=[3])
  assert c["diff_ci95"] == [None, None] and c["verdict"] == "undecided"
  assert c["diff_mean"] == pytest.approx(0.8) and c["seeds"] == [3]


def test_interval_that_spans_zero_is_undecided():
  c = demo_stats.paired_comparison("x", "iou", [0.6, 0.4, 0.55], [0.5, 0.5, 0.5],
                                   seeds=[0, 1, 2])
  lo, hi = c["diff_ci95"]
  assert lo < 0 < hi and c["verdict"] == "undecided" and c["wins"] == 2
  assert set(c) == {"name", "metric", "ctp", "baseline", "diff_mean", "diff_ci95", "wins",
                    "seeds", "verdict"}


def test_comparisons_table_shows_the_stored_numbers():
  c = demo_stats.paired_comparison("retrieval vs random encoder", "top1", [0.5, 0.7],
                                   [0.4, 0.4], seeds=[0, 1])
  table = demo_stats.comparisons_table([c])
  assert "| retrieval vs random encoder | top1 | 0.600 | 0.400 | +0.200 [-1.071, +1.471]" in table
  c["diff_mean"] = 0.333
  assert "+0.333" in demo_stats.comparisons_table([c])


def _labels(per_class=(24, 24, 20, 30)):
  return np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])


def test_few_label_split_is_stratified_and_fixed_by_seed():
  labels = _labels()
  val, train, few = demo_splits.split_plan(labels, 0, val_per_class=2, few_fraction=0.1)
  for c, n in enumerate((24, 24, 20, 30)):
    assert int(np.sum(labels[val] == c)) == 2
    assert int(np.sum(labels[train] == c)) == n - 2
    assert int(np.sum(labels[few] == c)) == max(1, round(0.1 * (n - 2)))
  assert set(few) <= set(train) and not set(val) & set(train)
  assert sorted(val + train) == list(range(len(labels)))
  again = demo_splits.split_plan(labels, 0, val_per_class=2, few_fraction=0.1)
  assert again == (val, train, few)
  other = demo_splits.split_plan(labels, 1, val_per_class=2, few_fraction=0.1)
  assert other[2] != few and other[0] != val


def _fake_dataset(root, labels):
  """A converted-dataset stand-in: context-only SequenceExamples in class order."""
  import json
  import os

  import tensorflow as tf

  from ctp_tf.data import shards
  os.makedirs(root)
  for split in ("train", "test"):
    with tf.io.TFRecordWriter(os.path.join(root, shards.shard_name(split, 0, 1))) as w:
      for i, c in enumerate(labels):
        ex = tf.train.SequenceExample()
        ex.context.feature[shards.MEDIA_ID].bytes_list.value.append(f"c{c}/v{i:03d}".encode())
        ex.context.feature[shards.LABEL_INDEX].int64_list.value.append(int(c))
        w.write(ex.SerializeToString())
  with open(os.path.join(root, shards.DATASET_JSON), "w") as f:
    json.dump({"classes": [f"c{c}" for c in sorted(set(labels.tolist()))],
               "splits": {s: {"videos": len(labels), "shards": 1} for s in ("train", "test")}},
              f)


def test_split_shards_are_written_class_mixed(tmp_path):
  """The per-seed train split is read by a small shuffle buffer: its shard must not be in the
  source's class order (batches of two or three classes)."""
  import tensorflow as tf

  from ctp_tf.data import shards
  labels = _labels()
  src, out = str(tmp_path / "src"), str(tmp_path / "out")
  _fake_dataset(src, labels)
  media = demo_splits.write_split_dir(src, out, 0, val_per_class=2, few_fraction=0.1)
  written = []
  for raw in tf.data.TFRecordDataset(f"{out}/{shards.shard_name('train', 0, 1)}"):
    ex = tf.train.SequenceExample.FromString(raw.numpy())
    written.append(int(ex.context.feature[shards.LABEL_INDEX].int64_list.value[0]))
  assert len(written) == len(media["train"]) == len(labels) - 8
  first = written[:len(written) // 4]
  assert len(set(first)) == 4, first        # the first quarter already holds every class
