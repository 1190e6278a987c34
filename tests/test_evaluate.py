"""10-clip evaluation and retrieval features with known answers: stub models whose per-clip
outputs are chosen, so that the per-video aggregation (REFERENCE.md "Test": the softmax of each
of the 10 clips averaged per video), top-1/5 with ties, the confusion matrix and retrieval's
per-video feature mean are checked against numpy, not against the code's own path."""

import json
import os

import numpy as np
import pytest

from conftest import write_tiny_shards
from ctp_tf import defaults
from ctp_tf.data import finetune_input
from ctp_tf.downstream import evaluate, retrieval

NUM_CLASSES = 7
CLIP_LEN, STRIDE, RESIZE, CROP = 4, 2, (40, 32), 32


def np_softmax(x):
  e = np.exp(np.asarray(x, np.float64) - np.max(x, axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


class TableModel:
  """Logits looked up by a clip id written into each clip's first pixel."""

  def __init__(self, table):
    self.table = np.asarray(table, np.float32)
    self.calls = []

  def predict_on_batch(self, clips):
    clips = np.asarray(clips)
    self.calls.append(len(clips))
    return self.table[clips[:, 0, 0, 0, 0].astype(int)]


def _table_batches(video_order, num_clips, batch_size, labels):
  """Eval-style batches of 2x2 clips whose first pixel is `video * num_clips + clip`."""
  batches = []
  for i in range(0, len(video_order), batch_size):
    vids = video_order[i:i + batch_size]
    clips = np.zeros((len(vids), num_clips, 1, 2, 2, 3), np.uint8)
    for b, v in enumerate(vids):
      clips[b, :, 0, 0, 0, 0] = v * num_clips + np.arange(num_clips)
    batches.append({"clips": clips, "label": np.asarray([labels[v] for v in vids]),
                    "video_index": np.asarray(vids)})
  return batches


def test_predict_videos_averages_the_softmax_of_all_ten_clips():
  rng = np.random.default_rng(0)
  v, k, c = 5, 10, 4
  logits = rng.normal(0, 3, (v, k, c))
  # Video 0: clip 0 votes class 3 very strongly, the 9 others class 1 -> class 1 on average.
  logits[0] = [0, 0, 0, 0]
  logits[0, 0] = [0, 0, 0, 20]
  logits[0, 1:, 1] = 4
  # Video 1: averaging logits would pick class 0 (one huge logit), averaging softmaxes picks
  # class 2 (a steady vote).
  logits[1] = [0, 0, 0, 0]
  logits[1, 0, 0] = 60
  logits[1, 1:, 2] = 3
  labels = [1, 2, 0, 3, 1]
  order = [3, 0, 4, 1, 2]      # batches arrive out of video order; the last one is partial
  model = TableModel(logits.reshape(v * k, c))
  scores, got_labels, index = evaluate.predict_videos(model, _table_batches(order, k, 2, labels))
  want = np_softmax(logits).mean(axis=1)
  np.testing.assert_array_equal(index, np.arange(v))
  np.testing.assert_array_equal(got_labels, labels)
  np.testing.assert_allclose(scores, want, rtol=1e-6, atol=1e-7)
  assert scores.dtype == np.float32 and scores.shape == (v, c)
  assert int(np.argmax(scores[0])) == 1 and int(np.argmax(scores[1])) == 2
  assert model.calls == [20, 20, 10]
  # Splitting the clips over several calls changes nothing.
  model = TableModel(logits.reshape(v * k, c))
  split, _, _ = evaluate.predict_videos(model, _table_batches(order, k, 2, labels),
                                        max_clips_per_call=3)
  np.testing.assert_allclose(split, scores, rtol=1e-6, atol=0)
  assert max(model.calls) == 3 and sum(model.calls) == v * k
  with pytest.raises(ValueError, match="empty"):
    evaluate.predict_videos(model, [])


def test_topk_ties_and_the_confusion_matrix():
  # 7 classes, so top-5 can miss. Ties rank the lower class index first (stable argsort).
  s = np.array([
      [.10, .30, .30, .05, .05, .10, .10],   # label 2: tie with class 1 -> top-1 miss, top-2 hit
      [.40, .20, .10, .10, .10, .05, .05],   # label 0: top-1 hit
      [.30, .20, .15, .15, .10, .05, .05],   # label 6: 6th/7th -> top-5 miss
      [.25, .25, .14, .12, .08, .08, .08],   # label 5: tie for 5th with class 4 -> top-5 miss
      [.25, .25, .14, .12, .08, .08, .08],   # label 4: same scores, class 4 wins the tie
      [.05, .05, .10, .60, .10, .05, .05],   # label 3: top-1 hit
  ], np.float32)
  labels = np.array([2, 0, 6, 5, 4, 3])
  np.testing.assert_array_equal(evaluate.topk_correct(s, labels, 1), [0, 1, 0, 0, 0, 1])
  np.testing.assert_array_equal(evaluate.topk_correct(s, labels, 2), [1, 1, 0, 0, 0, 1])
  np.testing.assert_array_equal(evaluate.topk_correct(s, labels, 5), [1, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(evaluate.topk_correct(s, labels, 50), [1] * 6)
  names = [f"c{i}" for i in range(NUM_CLASSES)]
  m = evaluate.video_metrics(s, labels, names)
  assert m["top1"] == pytest.approx(2 / 6) and m["top5"] == pytest.approx(4 / 6)
  assert m["num_videos"] == 6 and m["class_names"] == names
  want = np.zeros((NUM_CLASSES, NUM_CLASSES), int)
  for true, pred in [(2, 1), (0, 0), (6, 0), (5, 0), (4, 0), (3, 3)]:   # rows true, cols pred
    want[true, pred] += 1
  np.testing.assert_array_equal(m["confusion_matrix"], want)
  assert m["per_class"] == {"c0": 1.0, "c1": None, "c2": 0.0, "c3": 1.0, "c4": 0.0,
                            "c5": 0.0, "c6": 0.0}
  assert m["mean_class_accuracy"] == pytest.approx(2 / 6)   # classes with videos only


@pytest.fixture(scope="module")
def seven_class_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("seven_classes"))
  write_tiny_shards(d, num_classes=NUM_CLASSES, videos_per_split={"train": 7, "test": 9},
                    frames=(14, 30), height=32, width=40, seed=3)
  return d


def _expected_clips(data_dir, split, num_clips):
  """{video_index: (label, clips [K, T, S, S, 3])} read with the REFERENCE test protocol."""
  out = {}
  for batch in finetune_input.eval_dataset(data_dir, split, num_clips=num_clips,
                                           clip_len=CLIP_LEN, stride=STRIDE, resize=RESIZE,
                                           crop_size=CROP, batch_size=3):
    for clips, label, vid in zip(np.asarray(batch["clips"]), np.asarray(batch["label"]),
                                 np.asarray(batch["video_index"])):
      out[int(vid)] = (int(label), clips)
  return out


class PatternModel:
  """Logits = fixed random patterns . clip: every clip of a video gets its own logits."""

  def __init__(self, num_outputs, seed=0):
    rng = np.random.default_rng(seed)
    self.pattern = rng.normal(0, 1, (CLIP_LEN * CROP * CROP * 3, num_outputs)) / 4000.0
    self.clips_seen = 0

  def outputs(self, clips):
    clips = np.asarray(clips, np.float64)
    return clips.reshape(len(clips), -1) @ self.pattern

  def predict_on_batch(self, clips):
    self.clips_seen += len(clips)
    return self.outputs(clips).astype(np.float32)


def test_evaluate_scores_every_test_clip_of_every_video(seven_class_dir, tmp_path, monkeypatch):
  """evaluate() end to end on shards with a stub model: 10 clips per video at the REFERENCE
  offsets, their softmaxes averaged, top-1/5 and the confusion matrix as numpy has them."""
  from ctp_tf.downstream import finetuned

  config = defaults.finetune_config()
  config.data.clip_len, config.data.stride, config.data.crop_size = CLIP_LEN, STRIDE, CROP
  config.data.test_resize = RESIZE
  config.data.num_test_clips = 3     # evaluate(num_clips=10), the default, must win
  config.train.eval_batch_size = 4
  model = PatternModel(NUM_CLASSES)
  classes = [f"class{c}" for c in range(NUM_CLASSES)]
  # evaluate reads the workdir through ctp_tf.downstream.finetuned: stub both reads.
  monkeypatch.setattr(finetuned, "workdir_info", lambda workdir: {"classes": classes})
  monkeypatch.setattr(finetuned, "load_finetuned",
                      lambda workdir: (model, config, {"classes": classes, "weights": "stub"}))
  seen = {}
  original = evaluate.predict_videos

  def spy(*args, **kwargs):
    seen["out"] = original(*args, **kwargs)
    return seen["out"]

  monkeypatch.setattr(evaluate, "predict_videos", spy)
  out = str(tmp_path / "eval.json")
  res = evaluate.evaluate(str(tmp_path), seven_class_dir, output=out)

  videos = _expected_clips(seven_class_dir, "test", 10)
  assert model.clips_seen == 10 * len(videos) == 90
  ids = sorted(videos)
  labels = np.array([videos[v][0] for v in ids])
  per_clip = np.stack([np_softmax(model.outputs(videos[v][1])) for v in ids])   # [V, 10, C]
  # The clips of a video really differ, so scoring fewer clips would change the scores.
  assert np.abs(per_clip - per_clip[:, :1]).max() > 0.05
  want = per_clip.mean(axis=1)
  np.testing.assert_allclose(seen["out"][0], want, rtol=1e-5, atol=1e-6)
  pred = np.argmax(want, axis=1)
  rank = (want > want[np.arange(len(ids)), labels][:, None]).sum(axis=1)   # no exact ties here
  assert res["top1"] == pytest.approx(np.mean(pred == labels))
  assert res["top5"] == pytest.approx(np.mean(rank < 5))
  assert 0.0 < res["top5"] < 1.0 or res["top1"] < res["top5"]   # the test has teeth
  confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), int)
  np.add.at(confusion, (labels, pred), 1)
  np.testing.assert_array_equal(res["confusion_matrix"], confusion)
  assert res["num_clips"] == 10 and res["num_videos"] == 9 and res["split"] == "test"
  with open(out) as f:
    assert json.load(f)["confusion_matrix"] == confusion.tolist()
  assert os.path.getsize(res["confusion_png"]) > 1000


def test_retrieval_features_are_the_mean_over_clips(seven_class_dir):
  """extract_features: the serving function's features of each test clip, averaged per video
  (not one clip's), in video_index order; then top-k by cosine against numpy."""
  import tensorflow as tf
  model = PatternModel(6, seed=1)
  calls = []

  def serve(clips):
    assert isinstance(clips, tf.Tensor)
    calls.append(int(clips.shape[0]))
    return {"retrieval_features": model.outputs(clips.numpy()).astype(np.float32),
            "other": np.zeros((int(clips.shape[0]), 2), np.float32)}

  kw = dict(num_clips=3, clip_len=CLIP_LEN, stride=STRIDE, resize=RESIZE, crop_size=CROP,
            batch_size=4)
  feats, labels, index = retrieval.extract_features(serve, seven_class_dir, "test", **kw)
  videos = _expected_clips(seven_class_dir, "test", 3)
  ids = sorted(videos)
  per_clip = np.stack([model.outputs(videos[v][1]) for v in ids])      # [V, 3, D]
  assert np.abs(per_clip - per_clip[:, :1]).max() > 0.1 * np.abs(per_clip).max()
  np.testing.assert_array_equal(index, ids)
  np.testing.assert_array_equal(labels, [videos[v][0] for v in ids])
  np.testing.assert_allclose(feats, per_clip.mean(axis=1), rtol=1e-5, atol=1e-6)
  assert sum(calls) == 3 * len(ids)

  gallery, glabels, _ = retrieval.extract_features(serve, seven_class_dir, "train", **kw)
  q = feats / np.linalg.norm(feats, axis=1, keepdims=True)
  g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
  ranked = np.argsort(-(q @ g.T), axis=1, kind="stable")
  want = {f"top{k}": float(np.mean((glabels[ranked[:, :k]] == labels[:, None]).any(axis=1)))
          for k in (1, 3, 50)}
  assert retrieval.topk_accuracy(feats, labels, gallery, glabels, ks=(1, 3, 50)) == \
      pytest.approx(want)


def test_retrieval_ranks_by_cosine_not_by_dot_product():
  # Dot products would rank the long gallery vector first for every query; cosine does not.
  gallery = np.array([[10.0, 0.0], [1.0, 1.1], [0.2, 1.0]], np.float32)
  glabels = np.array([0, 1, 2])
  query = np.array([[1.0, 1.0], [0.1, 1.0], [1.0, 0.05]], np.float32)
  idx, sims = retrieval.topk_neighbours(query, gallery, 3)
  np.testing.assert_array_equal(idx, [[1, 2, 0], [2, 1, 0], [0, 1, 2]])
  qn = query / np.linalg.norm(query, axis=1, keepdims=True)
  gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
  np.testing.assert_allclose(sims, np.take_along_axis(qn @ gn.T, idx, axis=1), rtol=1e-6)
  got = retrieval.topk_accuracy(query, [1, 2, 0], gallery, glabels, ks=(1, 2))
  assert got == {"top1": 1.0, "top2": 1.0}
  got = retrieval.topk_accuracy(query, [0, 0, 1], gallery, glabels, ks=(1, 2, 3))
  assert got == pytest.approx({"top1": 0.0, "top2": 1 / 3, "top3": 1.0})


def test_confusion_png_shows_rows_normalised(tmp_path, monkeypatch):
  """The PNG's colours are each true class's row divided by its videos (a class without test
  videos stays 0), not columns or raw counts."""
  import matplotlib.axes
  shown = []
  original = matplotlib.axes.Axes.imshow

  def spy(self, x, *args, **kwargs):
    shown.append(np.array(x, dtype=np.float64))
    return original(self, x, *args, **kwargs)

  monkeypatch.setattr(matplotlib.axes.Axes, "imshow", spy)
  confusion = np.array([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
  path = str(tmp_path / "c.png")
  evaluate.plot_confusion(confusion, ["a", "b", "c"], path)
  assert len(shown) == 1 and os.path.getsize(path) > 1000
  np.testing.assert_allclose(shown[0], [[.75, .25, 0], [0, 0, 0], [.25, .25, .5]])


def test_retrieval_cache_is_reused_only_with_the_same_settings(seven_class_dir, tmp_path):
  calls = []

  def serve(clips):
    calls.append(int(clips.shape[0]))
    x = np.asarray(clips, np.float32).reshape(int(clips.shape[0]), -1)
    return {"retrieval_features": np.stack([x.mean(1), x.std(1), x[:, ::7].mean(1)], 1)}

  cfg = {"clip_shape": [CLIP_LEN, CROP, CROP]}
  cache = str(tmp_path / "feats.npz")
  kw = dict(ks=(1, 2), stride=STRIDE, resize=RESIZE, batch_size=4, features_cache=cache,
            cache_key="stub")
  first = retrieval.run_retrieval(serve, cfg, seven_class_dir, num_clips=2, **kw)
  assert sum(calls) == 2 * (7 + 9) and first["num_queries"] == 9 and first["num_gallery"] == 7
  calls.clear()
  assert retrieval.run_retrieval(serve, cfg, seven_class_dir, num_clips=2, **kw) == first
  assert not calls                                   # same settings: read from the cache
  again = retrieval.run_retrieval(serve, cfg, seven_class_dir, num_clips=3, **kw)
  assert sum(calls) == 3 * (7 + 9)                   # other settings: recomputed
  with np.load(cache) as z:                          # and the cache now holds the new ones
    assert json.loads(str(z["meta"]))["num_clips"] == 3
  calls.clear()
  retrieval.run_retrieval(serve, cfg, seven_class_dir, num_clips=3,
                          **dict(kw, cache_key="another model"))
  assert sum(calls) == 3 * (7 + 9)
  assert set(again) == set(first)
