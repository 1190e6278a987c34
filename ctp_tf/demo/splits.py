"""Per-seed splits for the demo's finetuning arms, carved from a converted dataset's train split.

`split_plan` picks, per class and fixed by the seed, a validation set (for the per-epoch
curves, never the test split) and a few-label training set (a fraction of each class's
remaining training videos). `write_split_dir` writes a dataset directory holding
`train` (all training videos minus validation), `train_few`, `val` and the untouched `test`
shards, so the ordinary finetuning and evaluation code reads them by split name.

Videos are chosen one by one (stratified by class). On the demo data every video is an
independent render; on UCF-101-style data videos of one group share a scene, so a validation
score from such a split is optimistic (the test split, split by group, is not affected).
"""

import json
import os

import numpy as np


def _records(data_dir, split):
  """[(media_id, label, serialized)] of a split, sorted by media_id (a stable order)."""
  import tensorflow as tf  # noqa: PLC0415

  from ctp_tf.data import reader, shards  # noqa: PLC0415
  out = []
  for raw in tf.data.TFRecordDataset(reader.list_shards(data_dir, split)).as_numpy_iterator():
    ex = tf.train.SequenceExample.FromString(raw)
    feat = ex.context.feature
    out.append((feat[shards.MEDIA_ID].bytes_list.value[0].decode(),
                int(feat[shards.LABEL_INDEX].int64_list.value[0]), raw))
  out.sort(key=lambda r: r[0])
  return out


def split_plan(labels, seed, *, val_per_class=2, few_fraction=0.1):
  """Indices into `labels` for (`val`, `train`, `train_few`), stratified, fixed by `seed`.

  Per class: `val_per_class` videos go to validation (kept at most half the class), the rest
  to `train`, and the first max(1, round(few_fraction * rest)) of those (in the seeded
  order) to `train_few`. So train_few is inside train and neither touches val.
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng([int(seed), 16])
  val, train, few = [], [], []
  for c in sorted(set(labels.tolist())):
    idx = np.flatnonzero(labels == c)
    idx = idx[rng.permutation(len(idx))]
    n_val = min(int(val_per_class), len(idx) // 2)
    rest = idx[n_val:]
    n_few = max(1, int(round(few_fraction * len(rest))))
    val += idx[:n_val].tolist()
    train += rest.tolist()
    few += rest[:n_few].tolist()
  return sorted(val), sorted(train), sorted(few)


def write_split_dir(data_dir, out_dir, seed, *, val_per_class=2, few_fraction=0.1,
                    train_split="train", test_split="test"):
  """Writes `out_dir` with splits train / train_few / val (from `train_split`) and test.

  Returns a dict of media ids per split. A finished directory (its `splits.json` present) is
  reused as it is.
  """
  import tensorflow as tf  # noqa: PLC0415

  from ctp_tf.data import reader, shards  # noqa: PLC0415
  done = os.path.join(out_dir, "splits.json")
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  records = _records(data_dir, train_split)
  val, train, few = split_plan([r[1] for r in records], seed, val_per_class=val_per_class,
                               few_fraction=few_fraction)
  meta = shards.load_dataset_json(data_dir)
  tmp = f"{out_dir}.tmp-{os.getpid()}"
  os.makedirs(tmp, exist_ok=True)
  splits_meta = {}
  media = {}
  # Written in a seeded random order: `records` is sorted by media id, i.e. by class, and a
  # reader's shuffle buffer smaller than the split would then give batches of two or three
  # classes (BatchNorm's batch statistics and the gradient both follow the class).
  order = np.random.default_rng([int(seed), 17])
  for name, idx in (("train", train), ("train_few", few), ("val", val)):
    shards.write_tfrecord_atomic(os.path.join(tmp, shards.shard_name(name, 0, 1)),
                                 (records[i][2] for i in order.permutation(idx)))
    splits_meta[name] = {"videos": len(idx), "shards": 1}
    media[name] = [records[i][0] for i in idx]
  test_paths = reader.list_shards(data_dir, test_split)
  for p in test_paths:
    tf.io.gfile.copy(p, os.path.join(tmp, os.path.basename(p)), overwrite=True)
  splits_meta["test"] = dict(meta["splits"][test_split])
  media["test"] = sorted(r[0] for r in _records(data_dir, test_split))
  meta = dict(meta, splits=splits_meta,
              derived_from={"data_dir": os.path.abspath(data_dir), "seed": int(seed),
                            "val_per_class": int(val_per_class),
                            "few_fraction": float(few_fraction)})
  with open(os.path.join(tmp, shards.DATASET_JSON), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  with open(os.path.join(tmp, "splits.json"), "w") as f:
    json.dump(media, f, indent=1, sort_keys=True)
  if os.path.exists(out_dir):
    import shutil  # noqa: PLC0415
    shutil.rmtree(out_dir)
  os.replace(tmp, out_dir)
  return media
