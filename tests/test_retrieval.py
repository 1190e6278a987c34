"""Retrieval top-k against a direct numpy computation, ties, k beyond the gallery, end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ctp_tf.downstream import retrieval

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference_topk(query, qlabels, gallery, glabels, ks):
  """Full similarity matrix in float64, Python sort by (-similarity, gallery index)."""
  q = np.asarray(query, np.float64)
  g = np.asarray(gallery, np.float64)
  q /= np.linalg.norm(q, axis=1, keepdims=True)
  g /= np.linalg.norm(g, axis=1, keepdims=True)
  sims = q @ g.T
  out = {}
  for k in ks:
    hits = 0
    for i in range(len(q)):
      order = sorted(range(len(g)), key=lambda j: (-sims[i, j], j))[:k]
      hits += any(glabels[j] == qlabels[i] for j in order)
    out[f"top{k}"] = hits / len(q)
  return out


def test_random_features_match_reference_with_small_blocks():
  rng = np.random.default_rng(0)
  gallery = rng.normal(size=(37, 16)).astype(np.float32)
  query = rng.normal(size=(11, 16)).astype(np.float32)
  glabels = rng.integers(0, 5, size=37)
  qlabels = rng.integers(0, 5, size=11)
  ks = (1, 5, 10, 20, 50)
  got = retrieval.topk_accuracy(query, qlabels, gallery, glabels, ks=ks,
                                query_block=3, gallery_block=4)
  want = reference_topk(query, qlabels, gallery, glabels, ks)
  assert got == pytest.approx(want, abs=0)
  assert got["top50"] == 1.0 or set(qlabels) - set(glabels)   # k > gallery: whole gallery
  # Blocking must not change anything.
  assert retrieval.topk_accuracy(query, qlabels, gallery, glabels, ks=ks) == got
  assert got["top1"] <= got["top5"] <= got["top10"] <= got["top20"]


def test_ties_break_by_gallery_index():
  # One-hot gallery rows have norm 1, so every similarity is one product: exact ties for
  # duplicated rows whatever the summation order.
  gallery = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 3, 0]]
  glabels = np.array([5, 6, 7, 8, 9, 10, 6])
  query = np.array([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1]], np.float32)
  qlabels = np.array([6, 7, 10])
  idx, sims = retrieval.topk_neighbours(query, gallery, 3, query_block=2, gallery_block=3)
  np.testing.assert_array_equal(idx[0], [0, 1, 6])
  np.testing.assert_array_equal(idx[1], [2, 3, 0])
  np.testing.assert_array_equal(idx[2], [5, 0, 1])
  np.testing.assert_allclose(sims[0], [1, 1, 1])
  ks = (1, 2, 3, 50)
  got = retrieval.topk_accuracy(query, qlabels, gallery, glabels, ks=ks, gallery_block=2)
  # Query 0 (class 6): nearest is gallery 0 (class 5) by the tie rule, then gallery 1 (class 6).
  # Query 1 (class 7): gallery 2 is class 7.  Query 2 (class 10): gallery 5 is class 10.
  assert got == {"top1": 2 / 3, "top2": 1.0, "top3": 1.0, "top50": 1.0}
  assert got == reference_topk(query, qlabels, gallery, glabels, ks)


def test_many_ties_at_the_topk_boundary_match_reference():
  # 40 one-hot gallery rows over 5 directions: every similarity is exact and tied 8 ways, so
  # the k-th value is almost always shared and the index rule decides who gets in.
  rng = np.random.default_rng(7)
  gallery = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 40)]
  glabels = rng.integers(0, 6, 40)
  query = rng.normal(size=(13, 5)).astype(np.float32)
  qlabels = rng.integers(0, 6, 13)
  ks = (1, 3, 5, 9, 10, 20, 50)
  for qb, gb in ((4, 7), (13, 40), (1, 3)):
    got = retrieval.topk_accuracy(query, qlabels, gallery, glabels, ks=ks,
                                  query_block=qb, gallery_block=gb)
    assert got == reference_topk(query, qlabels, gallery, glabels, ks), (qb, gb)
  idx, _ = retrieval.topk_neighbours(query, gallery, 12, query_block=5, gallery_block=6)
  qn = query / np.linalg.norm(query, axis=1, keepdims=True)
  for i in range(len(query)):
    want = sorted(range(40), key=lambda j: (-float(qn[i] @ gallery[j]), j))[:12]
    np.testing.assert_array_equal(idx[i], want)


def test_k_beyond_gallery_and_misses():
  gallery = np.array([[1, 0], [0, 1]], np.float32)
  idx, _ = retrieval.topk_neighbours(np.array([[1, 1]], np.float32), gallery, 50)
  assert idx.shape == (1, 2)
  np.testing.assert_array_equal(idx[0], [0, 1])    # exact tie at 1/sqrt(2): by index
  got = retrieval.topk_accuracy(np.array([[1, 0]], np.float32), [3], gallery, [1, 2], ks=(1, 50))
  assert got == {"top1": 0.0, "top50": 0.0}
  with pytest.raises(ValueError, match="gallery"):
    retrieval.topk_accuracy(np.ones((1, 2)), [0], np.zeros((0, 2)), [], ks=(1,))


def test_table_formats_percentages():
  table = retrieval.format_table({"top1": 0.5, "top5": 0.25})
  assert "top1" in table and "50.00" in table and "25.00" in table


def test_retrieval_end_to_end_random_and_export(tiny_data_dir, tmp_path):
  """scripts/retrieval.py with a random encoder: JSON written, cache reused, fractions sane."""
  out = tmp_path / "r.json"
  cache = tmp_path / "feats.npz"
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "retrieval.py"), "--model=random",
         f"--data_dir={tiny_data_dir}", "--arch=r3d_10", "--width_multiplier=0.125",
         "--clip_shape=4,32,32", "--num_clips=2", f"--output={out}", f"--features_cache={cache}",
         "--topk=1,2,50"]
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads(out.read_text())
  assert set(res) >= {"top1", "top2", "top50"}
  assert res["num_queries"] == 4 and res["num_gallery"] == 6
  assert 0.0 <= res["top1"] <= res["top2"] <= res["top50"] == 1.0   # 2 classes, 6 gallery videos
  with np.load(cache) as z:
    assert z["gallery"].shape[0] == 6 and z["query"].shape[0] == 4
    np.testing.assert_array_equal(z["gallery_index"], np.arange(6))
    # Recompute top-k from the cached features directly.
    direct = reference_topk(z["query"], z["query_labels"], z["gallery"], z["gallery_labels"],
                            (1, 2))
  assert res["top1"] == pytest.approx(direct["top1"]) and res["top2"] == pytest.approx(
      direct["top2"])


def test_eval_clips_come_from_hand_computed_offsets(tmp_path):
  """The clips retrieval/evaluation see are the REFERENCE test offsets, end to end:
  L = (frames - clip_len*stride + 1) / num_clips, clip k starts at int(L/2 + L*k)."""
  from conftest import write_tiny_shards   # tests/ is on the path under pytest
  from ctp_tf.data import finetune_input

  d = str(tmp_path / "shards")
  videos = write_tiny_shards(d, videos_per_split={"train": 1, "test": 3}, frames=(20, 37))["test"]
  clip_len, stride, num_clips = 4, 2, 3
  ds = finetune_input.eval_dataset(d, "test", num_clips=num_clips, clip_len=clip_len,
                                   stride=stride, resize=(64, 48), crop_size=48, batch_size=2)
  seen = 0
  for batch in ds:
    for clips, vid in zip(np.asarray(batch["clips"]), np.asarray(batch["video_index"])):
      frames = videos[vid][:, :, 8:56].astype(np.float32)       # centre 48x48 of 64x48
      n = len(frames)
      seg = (n - clip_len * stride + 1) / num_clips
      for k in range(num_clips):
        start = int(seg / 2 + seg * k)
        for j in range(clip_len):
          want = min(start + j * stride, n - 1)
          err = np.abs(frames - clips[k, j].astype(np.float32)).mean(axis=(1, 2, 3))
          assert int(np.argmin(err)) == want, (vid, k, j, n)
          # Clearly the right frame, not a near tie (JPEG-coded noise is not exact).
          assert err[want] < 0.8 * np.sort(err)[1], (err[want], np.sort(err)[:3])
      seen += 1
  assert seen == 3
