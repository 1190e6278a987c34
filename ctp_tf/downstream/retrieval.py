"""Video retrieval with a frozen encoder: test videos query the training videos.

Protocol (REFERENCE.md "Retrieval", following VCOP): `num_clips` clips spread uniformly over each
video, resized to 171x128 and centre-cropped to 112 (the export's clip shape decides T and the
crop), the encoder's `retrieval_features` (2x3x3 adaptive pool, flattened) averaged over the
clips, cosine similarity, and a query counts as correct at k if any of its k nearest training
videos shares its class.

Tie-breaking is deterministic: gallery videos are ranked by decreasing similarity and, at equal
similarity, by increasing gallery position (the gallery is ordered by `video_index`, the video's
position in its split). k larger than the gallery uses the whole gallery.

Similarities are computed block by block (queries x gallery), keeping a running top-k per query,
so memory is O(query_block * (gallery_block + k)) whatever the number of videos.

Example:
```python
import numpy as np
from ctp_tf.downstream import retrieval
g = np.eye(3, dtype=np.float32); q = g[:2] + 0.1
retrieval.topk_accuracy(q, np.array([0, 1]), g, np.array([0, 1, 1]), ks=(1, 2))
# {'top1': 1.0, 'top2': 1.0}
```
"""

import json
import os

import numpy as np

from ctp_tf import fileio

DEFAULT_KS = (1, 5, 10, 20, 50)


def l2_normalize(x, eps=1e-12):
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def _block_topk(sim, offset, k):
  """Top-k of each row of `sim` by (-similarity, column), columns numbered from `offset`.

  A partition finds each row's k-th largest value; only entries at or above it (ties at the
  boundary included, so the index rule still decides) are sorted, not the whole row.
  """
  rows, cols = sim.shape
  k = min(k, cols)
  kth = np.partition(sim, cols - k, axis=1)[:, cols - k]
  r, c = np.nonzero(sim >= kth[:, None])            # row-major: columns ascending per row
  v = sim[r, c]
  order = np.lexsort((c, -v, r))                    # by row, then -similarity, then column
  r, c, v = r[order], c[order], v[order]
  starts = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=rows))[:-1]])
  take = starts[:, None] + np.arange(k)[None, :]
  return v[take], c[take].astype(np.int64) + offset


def topk_neighbours(query, gallery, k, *, query_block=1024, gallery_block=8192):
  """Indices of the k most cosine-similar gallery rows for every query row.

  Args:
    query: float [Q, D]; gallery: float [G, D] (normalised here).
    k: neighbours wanted; clipped to G.

  Returns:
    (indices int64 [Q, k'], similarities float32 [Q, k']) with k' = min(k, G), each row sorted by
    decreasing similarity, ties by increasing gallery index.
  """
  query = l2_normalize(query)
  gallery = l2_normalize(gallery)
  num_q, num_g = query.shape[0], gallery.shape[0]
  k = int(min(k, num_g))
  out_idx = np.zeros((num_q, k), np.int64)
  out_sim = np.zeros((num_q, k), np.float32)
  if k == 0 or num_q == 0:
    return out_idx, out_sim
  for q0 in range(0, num_q, query_block):
    q = query[q0:q0 + query_block]
    best_sim = np.zeros((q.shape[0], 0), np.float32)
    best_idx = np.zeros((q.shape[0], 0), np.int64)
    for g0 in range(0, num_g, gallery_block):
      sim, idx = _block_topk(q @ gallery[g0:g0 + gallery_block].T, g0, k)
      cand_sim = np.concatenate([best_sim, sim], axis=1)
      cand_idx = np.concatenate([best_idx, idx], axis=1)
      # lexsort: last key is primary -> by -similarity, then by gallery index.
      order = np.lexsort((cand_idx, -cand_sim), axis=-1)[:, :k]
      best_sim = np.take_along_axis(cand_sim, order, axis=1)
      best_idx = np.take_along_axis(cand_idx, order, axis=1)
    out_idx[q0:q0 + q.shape[0]] = best_idx
    out_sim[q0:q0 + q.shape[0]] = best_sim
  return out_idx, out_sim


def topk_accuracy(query, query_labels, gallery, gallery_labels, ks=DEFAULT_KS, **block_kw):
  """Fraction of queries with a same-class video among their k nearest, for each k.

  Returns:
    {"top{k}": float in [0, 1]} for each k in `ks` (k beyond the gallery: whole gallery).
  """
  query_labels = np.asarray(query_labels)
  gallery_labels = np.asarray(gallery_labels)
  if len(query_labels) == 0:
    raise ValueError("retrieval needs at least one query video.")
  if len(gallery_labels) == 0:
    raise ValueError("retrieval needs at least one gallery video.")
  idx, _ = topk_neighbours(query, gallery, max(ks), **block_kw)
  hit = gallery_labels[idx] == query_labels[:, None]      # [Q, k']
  first_hit = np.cumsum(hit, axis=1) > 0
  result = {}
  for k in ks:
    kk = min(int(k), idx.shape[1])
    result[f"top{k}"] = float(np.mean(first_hit[:, kk - 1]))
  return result


def format_table(result):
  """A two-line text table of top-k percentages."""
  keys = list(result)
  head = " | ".join(f"{k:>6}" for k in keys)
  row = " | ".join(f"{100 * result[k]:6.2f}" for k in keys)
  return f"{head}\n{row}"


def extract_features(serve, data_dir, split, *, num_clips=10, clip_len=16, stride=1,
                     resize=(171, 128), crop_size=112, batch_size=8,
                     feature_key="retrieval_features"):
  """Per-video features: the mean over `num_clips` test clips of `serve(clips)[feature_key]`.

  Args:
    serve: `fn(clips uint8 [N, T, S, S, 3]) -> dict` (e.g. from `export.load_serving`).
    data_dir, split: shards read with `ctp_tf.data.finetune_input.eval_dataset`.

  Returns:
    (features float32 [V, D], labels int32 [V], video_index int32 [V]) sorted by video_index.
  """
  import tensorflow as tf
  from ctp_tf.data import finetune_input

  ds = finetune_input.eval_dataset(data_dir, split, num_clips=num_clips, clip_len=clip_len,
                                   stride=stride, resize=tuple(resize), crop_size=crop_size,
                                   batch_size=batch_size)
  from ctp_tf.data import reader

  feats, labels, index = [], [], []
  with reader.naming_bad_shards(data_dir, split):   # a damaged shard: name the file
    for batch in ds:
      clips = tf.convert_to_tensor(batch["clips"])
      b = int(clips.shape[0])
      flat = tf.reshape(clips, [b * num_clips] + list(clips.shape[2:]))
      out = np.asarray(serve(flat)[feature_key], np.float32)
      feats.append(out.reshape(b, num_clips, -1).mean(axis=1))
      labels.append(np.asarray(batch["label"], np.int32))
      index.append(np.asarray(batch["video_index"], np.int32))
  if not feats:
    raise ValueError(f"no videos in split {split!r} of {data_dir!r}.")
  feats, labels, index = (np.concatenate(a) for a in (feats, labels, index))
  order = np.argsort(index, kind="stable")
  return feats[order], labels[order], index[order]


def _save_npz_atomic(path, meta, **arrays):
  fileio.save_atomic(
      lambda tmp: np.savez(tmp, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays), path,
      makedirs=False)


def _load_cache(path, meta):
  """Arrays from a cache written with the same meta, else None (a stale cache is recomputed)."""
  if not path or not os.path.exists(path):
    return None
  try:
    with np.load(path) as z:
      if str(z["meta"]) != json.dumps(meta, sort_keys=True):
        return None
      return {k: z[k] for k in z.files if k != "meta"}
  except Exception:  # a truncated cache is just recomputed
    return None


def run_retrieval(serve, export_config, data_dir, *, ks=DEFAULT_KS, num_clips=10, stride=1,
                  resize=(171, 128), train_split="train", test_split="test", batch_size=8,
                  features_cache=None, cache_key=""):
  """Extracts (or loads cached) features for both splits and returns top-k accuracies.

  The clip length and crop come from the export's `clip_shape` (T, H, W), so the same call
  serves the full protocol (16x112x112) and the demo's small clips.

  Returns:
    dict with "top{k}" fractions plus "num_queries", "num_gallery".
  """
  clip_len, crop, _ = (int(v) for v in export_config["clip_shape"])
  meta = {"cache_key": cache_key, "num_clips": num_clips, "clip_len": clip_len, "stride": stride,
          "resize": list(resize), "crop": crop, "data_dir": os.path.abspath(data_dir),
          "splits": [train_split, test_split]}
  cached = _load_cache(features_cache, meta)
  if cached is None:
    kw = dict(num_clips=num_clips, clip_len=clip_len, stride=stride, resize=resize,
              crop_size=crop, batch_size=batch_size)
    g, gl, gi = extract_features(serve, data_dir, train_split, **kw)
    q, ql, qi = extract_features(serve, data_dir, test_split, **kw)
    cached = dict(gallery=g, gallery_labels=gl, gallery_index=gi,
                  query=q, query_labels=ql, query_index=qi)
    if features_cache:
      os.makedirs(os.path.dirname(os.path.abspath(features_cache)), exist_ok=True)
      _save_npz_atomic(features_cache, meta, **cached)
  result = topk_accuracy(cached["query"], cached["query_labels"], cached["gallery"],
                         cached["gallery_labels"], ks=ks)
  result["num_queries"] = int(len(cached["query_labels"]))
  result["num_gallery"] = int(len(cached["gallery_labels"]))
  return result


def random_encoder_export(export_dir, *, arch="r3d_18", width_multiplier=1.0,
                          clip_shape=(16, 112, 112), seed=0):
  """Exports a randomly initialised (seeded) standard encoder: the retrieval baseline."""
  import keras
  from ctp_tf import models
  from ctp_tf.downstream import export

  keras.utils.set_random_seed(seed)
  backbone = models.build_backbone(arch, "standard", width_multiplier=width_multiplier)
  return export.export_encoder(
      backbone, export_dir, config={"arch": arch, "width_multiplier": width_multiplier},
      clip_shape=clip_shape, source=f"random init, seed {seed}")
