"""10-clip action-recognition evaluation: averaged softmax over clips, top-1/5, per class.

Protocol (REFERENCE.md "Test"): `num_clips` clips spread uniformly over each video
(`ctp_tf.data.sampling.test_indices`), resized to 171x128 and centre-cropped to 112, the softmax
of each clip's logits averaged over the video's clips; a video is correct at k if its label is
among the k highest averaged scores (ties: `np.argsort` order, stable by class index).

Example:
```python
from ctp_tf.downstream import evaluate
res = evaluate.evaluate("runs/finetune", "data/ucf101_shards")   # after scripts/finetune.py
print(res["top1"], res["top5"])
```
"""

import os

import numpy as np

from ctp_tf import fileio, figures


def softmax(logits):
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def predict_videos(model, dataset, *, max_clips_per_call=None):
  """Video-level class scores: mean over each video's clips of softmax(model(clip)).

  Args:
    model: Keras classifier returning logits for uint8 `[N, T, S, S, 3]`.
    dataset: yields `{"clips": [B, K, T, S, S, 3], "label": [B], "video_index": [B]}`
      (`ctp_tf.data.finetune_input.eval_dataset`).
    max_clips_per_call: split a batch's B*K clips into calls of at most this many.

  Returns:
    (scores float32 [V, C], labels int32 [V], video_index int32 [V]) sorted by video_index.
  """
  scores, labels, index = [], [], []
  for batch in dataset:
    clips = np.asarray(batch["clips"])
    b, k = clips.shape[:2]
    flat = clips.reshape((b * k,) + clips.shape[2:])
    step = max_clips_per_call or len(flat)
    logits = np.concatenate([np.asarray(model.predict_on_batch(flat[i:i + step]))
                             for i in range(0, len(flat), step)])
    probs = softmax(logits).reshape(b, k, -1).mean(axis=1)
    scores.append(probs.astype(np.float32))
    labels.append(np.asarray(batch["label"], np.int32))
    index.append(np.asarray(batch["video_index"], np.int32))
  if not scores:
    raise ValueError("evaluation dataset is empty.")
  scores, labels, index = (np.concatenate(a) for a in (scores, labels, index))
  order = np.argsort(index, kind="stable")
  return scores[order], labels[order], index[order]


def topk_correct(scores, labels, k):
  """bool [V]: label among the k highest scores (k clipped to the number of classes)."""
  k = min(int(k), scores.shape[1])
  top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return (top == np.asarray(labels)[:, None]).any(axis=1)


def video_metrics(scores, labels, class_names=None):
  """top1, top5, per-class accuracy and the confusion matrix (rows: true, columns: predicted)."""
  scores = np.asarray(scores)
  labels = np.asarray(labels)
  num_classes = scores.shape[1]
  class_names = list(class_names or [str(c) for c in range(num_classes)])
  pred = np.argsort(-scores, axis=1, kind="stable")[:, 0]
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, pred), 1)
  per_class = {}
  for c in range(num_classes):
    n = int(confusion[c].sum())
    per_class[class_names[c]] = float(confusion[c, c] / n) if n else None
  valid = [v for v in per_class.values() if v is not None]
  return {
      "top1": float(np.mean(topk_correct(scores, labels, 1))),
      "top5": float(np.mean(topk_correct(scores, labels, 5))),
      "num_videos": int(len(labels)),
      "mean_class_accuracy": float(np.mean(valid)) if valid else None,
      "per_class": per_class,
      "confusion_matrix": confusion.tolist(),
      "class_names": class_names,
  }


def plot_confusion(confusion, class_names, path, title="Confusion matrix"):
  """Writes a row-normalised confusion-matrix PNG (atomically)."""
  plt = figures.pyplot()

  confusion = np.asarray(confusion, np.float64)
  rows = confusion.sum(axis=1, keepdims=True)
  norm = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
  n = len(class_names)
  size = min(4 + 0.25 * n, 30)
  fig, ax = plt.subplots(figsize=(size, size))
  im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  if n <= 60:  # tick labels become unreadable beyond that
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=6 if n > 20 else 9)
    ax.set_yticks(range(n), class_names, fontsize=6 if n > 20 else 9)
  if n <= 15:
    for i in range(n):
      for j in range(n):
        ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black")
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  figures.save_figure(fig, path, dpi=100)


def eval_dataset_for(config, data_dir, *, split=None, num_clips=None, batch_size=None):
  """The 10-clip test dataset a finetuning config describes."""
  from ctp_tf.data import finetune_input

  d = config.data
  return finetune_input.eval_dataset(
      data_dir, split or d.test_split, num_clips=int(num_clips or d.num_test_clips),
      clip_len=int(d.clip_len), stride=int(d.stride), resize=tuple(d.test_resize),
      crop_size=int(d.crop_size), batch_size=int(batch_size or config.train.get("eval_batch_size",
                                                                                 4)))


def evaluate(workdir, data_dir, *, num_clips=10, split=None, batch_size=None, output=None,
             confusion_png=None):
  """Evaluates the finetuned model of `workdir` (its `final.weights.h5`) on `split`.

  Writes the JSON result to `output` (default `workdir/eval_{split}.json`) and the confusion
  matrix PNG to `confusion_png` (default beside the JSON).

  Returns:
    {"top1", "top5", "num_videos", "num_clips", "per_class", "mean_class_accuracy",
     "confusion_matrix", "class_names", "split", "weights"}.
  """
  from ctp_tf.downstream import finetuned

  from ctp_tf.data import reader, shards
  from ctp_tf.errors import DataError

  info = finetuned.workdir_info(workdir)   # checked before the model is built
  data_classes = list(shards.load_dataset_json(data_dir).get("classes") or [])
  if data_classes and info.get("classes") and data_classes != list(info["classes"]):
    raise DataError(
        f"--data_dir={data_dir} has {len(data_classes)} classes ({', '.join(data_classes[:5])}"
        f"{', ...' if len(data_classes) > 5 else ''}) but the model of {workdir} was finetuned "
        f"on {len(info['classes'])} ({', '.join(info['classes'][:5])}"
        f"{', ...' if len(info['classes']) > 5 else ''}): evaluate on the dataset it was "
        "trained for.")
  model, config, info = finetuned.load_finetuned(workdir)
  split = split or config.data.test_split
  ds = eval_dataset_for(config, data_dir, split=split, num_clips=num_clips,
                        batch_size=batch_size)
  with reader.naming_bad_shards(data_dir, split):
    scores, labels, _ = predict_videos(model, ds)
  result = video_metrics(scores, labels, info.get("classes"))
  result.update({"num_clips": int(num_clips), "split": split, "weights": info["weights"]})
  output = output or os.path.join(workdir, f"eval_{split}.json")
  confusion_png = confusion_png or os.path.splitext(output)[0] + "_confusion.png"
  plot_confusion(result["confusion_matrix"], result["class_names"], confusion_png,
                 title=f"{os.path.basename(os.path.normpath(workdir))} ({split}, top-1 "
                       f"{100 * result['top1']:.1f}%)")
  result["confusion_png"] = confusion_png
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fileio.write_json_atomic(output, result)
  return result
