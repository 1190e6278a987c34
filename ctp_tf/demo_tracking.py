"""Does the pretext transfer? Zero-shot tracking of the demo videos' own object by a CtP model.

The CtP model is trained to follow patches pasted into the clip. The demo classes are defined
by how each video's own object moves, so a pretrained model that had learned to track in
general should also follow that object when given its frame-0 box, with no training. This
module measures exactly that on the demo's test videos, next to two references on the same
clips: the static guess (the frame-0 box kept for every frame) and the model's IoU on patches
pasted by the synthesis (what it was trained on).

The demo's object is white on a dark texture whose brightest colour channel stays at or below
160 (`ctp_tf.data.demo_data.make_scene`), so its box in every frame is the bounding box of the
pixels whose darkest channel exceeds `threshold`.

Example:
>>> from ctp_tf import demo, demo_tracking
>>> cfg = demo.pretrain_config(False, 0)
>>> clips, boxes = demo_tracking.object_clips("runs/demo/data/shards", clip_len=16,
...                                           crop_size=64)
>>> model = demo_tracking.load_pretrained("runs/demo/seed0/pretrain", cfg)
>>> iou = demo_tracking.tracking_iou(model, clips, boxes, cfg.synthesis)["object_iou"]
"""

import os

import numpy as np


def bright_boxes(clips, threshold=180):
  """Boxes (x1, y1, x2, y2) of the pixels brighter than `threshold` in every channel.

  Args:
    clips: uint8 `[V, T, H, W, 3]`.
  Returns:
    (boxes float32 `[V, T, 4]`, found bool `[V]`: the object is seen in every frame).
  """
  mask = clips.min(axis=-1) > threshold                        # [V, T, H, W]
  rows, cols = mask.any(axis=-1), mask.any(axis=-2)            # [V, T, H], [V, T, W]
  h, w = rows.shape[-1], cols.shape[-1]
  y1 = rows.argmax(-1)
  y2 = h - rows[..., ::-1].argmax(-1)
  x1 = cols.argmax(-1)
  x2 = w - cols[..., ::-1].argmax(-1)
  boxes = np.stack([x1, y1, x2, y2], -1).astype(np.float32)
  found = rows.any(-1).all(-1)
  return boxes, found


def object_clips(data_dir, *, clip_len, crop_size, split="test", stride=1, threshold=180):
  """The first `clip_len` frames (at `stride`) of every video of `split`, short side resized to
  `crop_size` and centre-cropped, with their object's box per frame.

  Videos whose object leaves the crop in some frame are left out.
  Returns (clips uint8 `[V, T, S, S, 3]`, boxes float32 `[V, T, 4]`).
  """
  import tensorflow as tf

  from ctp_tf.data import reader

  def prepare(video):
    idx = tf.minimum(tf.range(clip_len) * stride, video["num_frames"] - 1)
    frames = tf.map_fn(lambda j: tf.io.decode_jpeg(j, channels=3),
                       tf.gather(video["frames"], idx), fn_output_signature=tf.uint8)
    h = tf.cast(tf.shape(frames)[1], tf.float32)
    w = tf.cast(tf.shape(frames)[2], tf.float32)
    short = tf.minimum(h, w)
    size = tf.cast(tf.floor(tf.stack([h, w]) * crop_size / short + 0.5), tf.int32)
    frames = tf.image.resize(frames, size)
    y0 = (size[0] - crop_size) // 2
    x0 = (size[1] - crop_size) // 2
    frames = frames[:, y0:y0 + crop_size, x0:x0 + crop_size]
    return tf.saturate_cast(tf.round(frames), tf.uint8)

  ds = reader.read_videos(data_dir, split, shuffle=False, seed=0).map(prepare)
  clips = np.stack(list(ds.as_numpy_iterator()))
  boxes, found = bright_boxes(clips, threshold)
  return clips[found], boxes[found]


def load_pretrained(workdir, config):
  """The CtP model of a pretraining workdir at its last epoch checkpoint."""
  from ctp_tf.models.ctp import build_ctp_model
  from ctp_tf.training.callbacks import latest_checkpoint

  path = latest_checkpoint(os.path.join(workdir, "checkpoints"))
  if not path:
    raise FileNotFoundError(f"no checkpoints/epoch-*.weights.h5 under {workdir}: "
                            "pretraining there has not finished an epoch")
  d = config.data
  model = build_ctp_model(config.model, clip_shape=(int(d.clip_len), int(d.crop_size),
                                                    int(d.crop_size)),
                          num_boxes=int(config.synthesis.num_trajectories))
  model.load_weights(path)
  return model


def _mean_iou(pred, truth):
  """Mean IoU over frames 1..T-1 of boxes `[..., T, 4]`."""
  from ctp_tf.models.ctp import box_iou
  return float(np.mean(np.asarray(box_iou(pred[..., 1:, :], truth[..., 1:, :]))))


def tracking_iou(model, clips, boxes, synthesis_config, seed=0, batch_size=16):
  """Mean IoU of the model's boxes, frames 1..T-1, on the videos' own object and on pasted
  patches of the same clips, each with its static guess.

  Args:
    model: a `CtPModel` for clips of this size.
    clips: uint8 `[V, T, S, S, 3]`; boxes: float32 `[V, T, 4]` of the object.
    synthesis_config: the pretraining synthesis config (for the pasted-patch reference).
  Returns:
    dict with `object_iou`, `object_iou_static`, `pasted_iou`, `pasted_iou_static` (None when
    there are no clips) and `num_clips`.
  """
  import tensorflow as tf

  from ctp_tf.data.synthesis import synthesize_trajectories

  v = len(clips)
  if v == 0:
    return {"num_clips": 0, "object_iou": None, "object_iou_static": None,
            "pasted_iou": None, "pasted_iou_static": None}
  n = model.num_boxes

  def predict(c, b):
    out = []
    for i in range(0, len(c), batch_size):
      deltas = model({"clip": c[i:i + batch_size], "boxes": b[i:i + batch_size]},
                     training=False)
      out.append(np.asarray(model.decode(deltas, b[i:i + batch_size, :, 0])))
    return np.concatenate(out)

  # Every box slot gets the object's frame-0 box; slot 0's prediction is scored.
  obj_in = np.repeat(boxes[:, None], n, axis=1)
  obj_pred = predict(clips, obj_in)[:, 0]
  static = np.repeat(boxes[:, :1], boxes.shape[1], axis=1)

  base = tf.constant([int(seed), 7919], tf.int32)
  pasted = [synthesize_trajectories(tf.constant(c), tf.random.experimental.stateless_fold_in(
      base, i), synthesis_config) for i, c in enumerate(clips)]
  p_clips = np.stack([p["clip"].numpy() for p in pasted])
  p_boxes = np.stack([p["boxes"].numpy() for p in pasted]).astype(np.float32)
  p_pred = predict(p_clips, p_boxes)
  p_static = np.repeat(p_boxes[:, :, :1], p_boxes.shape[2], axis=2)
  return {"num_clips": int(v),
          "object_iou": _mean_iou(obj_pred, boxes),
          "object_iou_static": _mean_iou(static, boxes),
          "pasted_iou": _mean_iou(p_pred, p_boxes),
          "pasted_iou_static": _mean_iou(p_static, p_boxes)}
