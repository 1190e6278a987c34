"""Does the pretext transfer? Zero-shot tracking of the demo videos' own object by a CtP model.

The CtP model is trained to follow patches pasted into the clip. The demo classes are defined
by how each video's own object moves, so a pretrained model that had learned to track in
general should also follow that object when given its frame-0 box, with no training. This
module measures exactly that on the demo's test videos, next to two references on the same
clips: the static guess (the frame-0 box kept for every frame) and the model's IoU on patches
pasted by the synthesis (what it was trained on).

The object's box in every frame comes from the demo data's `demo_meta.json` (its centre, half
sizes and scale per frame, in stored pixels), mapped through the same resize and centre crop
as the clip. Only the demo data has object boxes; on other datasets this stage is skipped.

Example (after `python scripts/demo.py`):
>>> import os
>>> from ctp_tf.demo import tracking as demo_tracking
>>> from ctp_tf.downstream import export
>>> model, cfg, _ = export.load_ctp_workdir("runs/demo/seed0/pretrain")
>>> cache = os.path.expanduser("~/.cache/ctp_tf/demo")
>>> clips, boxes = demo_tracking.object_clips(
...     f"{cache}/shards", f"{cache}/raw/demo_meta.json", clip_len=16, crop_size=64)
>>> iou = demo_tracking.tracking_iou(model, clips, boxes, cfg.synthesis)["object_iou"]
"""

import numpy as np


def meta_path_for(data_dir):
  """The demo meta next to demo shards (`<cache>/raw/demo_meta.json`), or None."""
  import os  # noqa: PLC0415

  from ctp_tf.demo import data as demo_data  # noqa: PLC0415
  path = os.path.join(os.path.dirname(os.path.abspath(data_dir)), "raw", demo_data.META_FILE)
  return path if os.path.exists(path) else None


def object_boxes(entry, indices, *, width, height, resize, crop_size):
  """Boxes (x1, y1, x2, y2) `[T, 4]` of a meta entry's object at frame `indices`, in the
  coordinates of the clip resized to `resize` = (w, h) and centre-cropped to `crop_size`."""
  centres = np.asarray(entry["centres"], np.float64)[indices]
  scale = np.asarray(entry["scale"], np.float64)[indices]
  hx, hy = (float(v) for v in entry["half"])
  sx, sy = resize[0] / width, resize[1] / height
  ox, oy = (resize[0] - crop_size) // 2, (resize[1] - crop_size) // 2
  x1 = (centres[:, 0] - hx * scale) * sx - ox
  x2 = (centres[:, 0] + hx * scale) * sx - ox
  y1 = (centres[:, 1] - hy * scale) * sy - oy
  y2 = (centres[:, 1] + hy * scale) * sy - oy
  return np.stack([x1, y1, x2, y2], -1).astype(np.float32)


def object_clips(data_dir, meta_path, *, clip_len, crop_size, split="test", stride=1):
  """The first `clip_len` frames (at `stride`) of every video of `split`, short side resized to
  `crop_size` and centre-cropped (`augment.decode_center`), with their object's box per frame
  (from the demo meta at `meta_path`).

  Videos whose object box leaves the crop in some frame are left out.
  Returns (clips uint8 `[V, T, S, S, 3]`, boxes float32 `[V, T, 4]`).
  """
  import json  # noqa: PLC0415

  import tensorflow as tf  # noqa: PLC0415

  from ctp_tf.data import augment, reader  # noqa: PLC0415

  with open(meta_path) as f:
    meta = {v["path"]: v for v in json.load(f)["videos"]}
  videos = reader.read_videos(data_dir, split, shuffle=False, seed=0)
  h, w = (int(x) for x in tf.io.extract_jpeg_shape(next(iter(videos))["frames"][0])[:2])
  short = min(h, w)
  resize = (int(w * crop_size / short + 0.5), int(h * crop_size / short + 0.5))

  def prepare(video):
    idx = tf.minimum(tf.range(clip_len) * stride, video["num_frames"] - 1)
    return (augment.decode_center(video["frames"], idx, resize=resize, crop_size=crop_size),
            idx, video["media_id"])

  clips, boxes = [], []
  for clip, idx, media_id in videos.map(prepare).as_numpy_iterator():
    entry = meta.get("videos/" + media_id.decode())
    if entry is None:
      continue
    b = object_boxes(entry, idx, width=w, height=h, resize=resize, crop_size=crop_size)
    if b.min() < 0 or b.max() > crop_size:
      continue
    clips.append(clip)
    boxes.append(b)
  if not clips:
    return (np.zeros((0, clip_len, crop_size, crop_size, 3), np.uint8),
            np.zeros((0, clip_len, 4), np.float32))
  return np.stack(clips), np.stack(boxes)


def _mean_iou(pred, truth):
  """Mean IoU over frames 1..T-1 of boxes `[..., T, 4]`."""
  from ctp_tf.models.ctp import box_iou
  return float(np.mean(np.asarray(box_iou(pred[..., 1:, :], truth[..., 1:, :]))))


def _static(boxes):
  """The static guess: the frame-0 box of boxes `[..., T, 4]` kept for every frame."""
  return np.broadcast_to(boxes[..., :1, :], boxes.shape)


def tracking_iou(model, clips, boxes, synthesis_config, seed=0, batch_size=16):
  """Mean IoU of the model's boxes, frames 1..T-1, on the videos' own object and on pasted
  patches of the same clips, each with its static guess.

  Args:
    model: a `CtPModel` for clips of this size.
    clips: uint8 `[V, T, S, S, 3]`; boxes: float32 `[V, T, 4]` of the object.
    synthesis_config: the pretraining synthesis config (for the pasted-patch reference).
    seed: seeds the pasted patches (per clip, as in the pretraining dataset).
  Returns:
    dict with `object_iou`, `object_iou_static`, `pasted_iou`, `pasted_iou_static` (None when
    there are no clips) and `num_clips`.
  """
  import tensorflow as tf

  from ctp_tf.data.pretrain_input import example_seeds
  from ctp_tf.data.synthesis import synthesize_trajectories

  v = len(clips)
  if v == 0:
    return {"num_clips": 0, "object_iou": None, "object_iou_static": None,
            "pasted_iou": None, "pasted_iou_static": None}

  def predict(c, b):
    deltas = model.predict({"clip": c, "boxes": b}, batch_size=batch_size, verbose=0)
    return np.asarray(model.decode(deltas, b[:, :, 0]))

  # Every box slot gets the object's frame-0 box; slot 0's prediction is scored.
  obj_pred = predict(clips, np.repeat(boxes[:, None], model.num_boxes, axis=1))[:, 0]

  pasted = tf.data.Dataset.zip(tf.data.Dataset.from_tensor_slices(clips),
                               example_seeds(seed, 0)).map(
      lambda c, s: synthesize_trajectories(c, s, synthesis_config),
      num_parallel_calls=tf.data.AUTOTUNE).batch(v).get_single_element()
  p_clips = pasted["clip"].numpy()
  p_boxes = pasted["boxes"].numpy().astype(np.float32)
  p_pred = predict(p_clips, p_boxes)
  return {"num_clips": int(v),
          "object_iou": _mean_iou(obj_pred, boxes),
          "object_iou_static": _mean_iou(_static(boxes), boxes),
          "pasted_iou": _mean_iou(p_pred, p_boxes),
          "pasted_iou_static": _mean_iou(_static(p_boxes), p_boxes)}
