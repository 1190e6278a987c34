"""The Catch-the-Patch network: backbone + box-regression head, targets, losses, decoding.

Boxes are `(x1, y1, x2, y2)` in input pixels. Per trajectory and frame t the network
regresses normalised deltas against the frame-0 box (REFERENCE.md "Network for pretraining"):
`dx, dy = centre_t - centre_0`, `dw, dh = log w_t - log w_0` (sizes clamped >= 1), minus
`target_means`, divided by `target_stds`.
"""

import keras
from keras import ops

from ctp_tf.models.backbone_model import BackboneModel
from ctp_tf.layers.initializers import NumpyNormal
from ctp_tf.layers import synthesis_stage
from ctp_tf.layers.roi_align import ROIAlign
from ctp_tf.models.resnet3d import BACKBONE_STRIDE, build_backbone



def _centers_sizes(boxes):
  cx = (boxes[..., 0] + boxes[..., 2]) * 0.5
  cy = (boxes[..., 1] + boxes[..., 3]) * 0.5
  w = ops.maximum(boxes[..., 2] - boxes[..., 0], 1.0)
  h = ops.maximum(boxes[..., 3] - boxes[..., 1], 1.0)
  return cx, cy, w, h


def ctp_targets(boxes, means=(0.0, 0.0, 0.0, 0.0), stds=(0.8, 0.8, 0.04, 0.04)):
  """Normalised deltas `[..., T, 4]` of boxes `[..., T, 4]` against each track's frame 0."""
  boxes = ops.cast(boxes, "float32")
  cx, cy, w, h = _centers_sizes(boxes)
  deltas = ops.stack([cx - cx[..., :1], cy - cy[..., :1],
                      ops.log(w) - ops.log(w[..., :1]), ops.log(h) - ops.log(h[..., :1])], -1)
  return (deltas - ops.convert_to_tensor(means, "float32")) / ops.convert_to_tensor(stds, "float32")


def decode_boxes(deltas, boxes0, means=(0.0, 0.0, 0.0, 0.0), stds=(0.8, 0.8, 0.04, 0.04)):
  """Inverse of `ctp_targets`: deltas `[..., T, 4]` and frame-0 boxes `[..., 4]` -> `[..., T, 4]`."""
  d = (ops.cast(deltas, "float32") * ops.convert_to_tensor(stds, "float32")
       + ops.convert_to_tensor(means, "float32"))
  cx0, cy0, w0, h0 = _centers_sizes(ops.cast(boxes0, "float32")[..., None, :])
  cx, cy = cx0 + d[..., 0], cy0 + d[..., 1]
  w, h = w0 * ops.exp(d[..., 2]), h0 * ops.exp(d[..., 3])
  return ops.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def smooth_l1(x, beta=1.0):
  ax = ops.abs(x)
  return ops.where(ax < beta, 0.5 * ax * ax / beta, ax - 0.5 * beta)


def ctp_losses(pred, target, weights, beta=1.0):
  """(loss_ctr, loss_size): smooth-L1 over the (dx, dy) and the (dw, dh) terms, each summed
  with the per-frame weights `[..., T]` and divided by max(1, sum of weights)."""
  pred, target = ops.cast(pred, "float32"), ops.cast(target, "float32")
  w = ops.cast(weights, "float32")
  per_term = smooth_l1(pred - target, beta) * w[..., None]
  norm = ops.maximum(ops.sum(w), 1.0)
  return ops.sum(per_term[..., :2]) / norm, ops.sum(per_term[..., 2:]) / norm


def box_iou(a, b):
  """Element-wise IoU of boxes `[..., 4]` (broadcasting)."""
  a, b = ops.cast(a, "float32"), ops.cast(b, "float32")
  iw = ops.maximum(ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]), 0.0)
  ih = ops.maximum(ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]), 0.0)
  inter = iw * ih
  area_a = ops.maximum(a[..., 2] - a[..., 0], 0.0) * ops.maximum(a[..., 3] - a[..., 1], 0.0)
  area_b = ops.maximum(b[..., 2] - b[..., 0], 0.0) * ops.maximum(b[..., 3] - b[..., 1], 0.0)
  union = area_a + area_b - inter
  return ops.where(union > 0, inter / ops.maximum(union, 1e-12), 0.0)


def _scale_loss_for_distribution(loss):
  """Divide by the replica count under tf.distribute (Keras' own losses do this; a
  `compute_loss` override must too, or gradients are summed over replicas)."""
  try:
    from keras.src.losses.loss import scale_loss_for_distribution  # pinned keras 3.15
  except ImportError:   # pragma: no cover
    return loss
  return scale_loss_for_distribution(loss)


@keras.saving.register_keras_serializable(package="ctp_tf")
class CtPModel(BackboneModel, keras.Model):
  """Backbone + CtP head; trains with `model.fit` on the pretraining pipeline's batches.

  Called on `{"clip": [B, T, H, W, 3], "boxes": [B, N, T, 4]}` (only the frame-0 boxes are
  read; other keys such as "weights" are ignored) it returns normalised deltas `[B, N, T, 4]`.
  A batch of the "accelerator" placement (`synthesis_stage.STAGE_KEYS` present) has its
  patches and colour jitter applied first, inside the step (`synthesis_stage.finish_clips`).
  `compute_loss` reads the ground truth from the same dict (`x["boxes"]`, `x["weights"]`), so
  `fit` takes a dataset of `{"clip", "boxes", "weights"}` dicts with no labels; compile with
  an optimizer only. Metrics: `loss`, `loss_ctr`, `loss_size`, `iou` (decoded boxes vs ground
  truth over frames 1..T-1) and `iou_static` (the frame-0 box kept for every frame).

  Head: Conv3D with kernel (T', 1, 1) + ReLU squeezes the backbone's T' time steps
  ("temporal squeezing"); ROIAlign(roi_size, 1/stride, 2, aligned) on the frame-0 boxes;
  flatten; Dense(hidden) + ReLU; Dense(T*4). With `squeeze=False` the conv has kernel
  (1, 1, 1) and ROIAlign runs on each of the T' steps, concatenated (Table 3 ablation).

  Example:
  >>> import numpy as np
  >>> from ctp_tf.models import build_backbone
  >>> bb = build_backbone("r3d_10", "pretrain", width_multiplier=0.125,
  ...                     input_shape=(8, 32, 32, 3))
  >>> model = CtPModel(bb, num_frames=8, num_boxes=2, hidden=16)
  >>> boxes = np.tile(np.array([4, 4, 20, 20], "float32"), (1, 2, 8, 1))
  >>> tuple(model({"clip": np.zeros((1, 8, 32, 32, 3), "uint8"), "boxes": boxes}).shape)
  (1, 2, 8, 4)
  """

  def __init__(self, backbone, num_frames=16, num_boxes=3, squeeze=True, roi_size=5, hidden=512,
               target_means=(0.0, 0.0, 0.0, 0.0), target_stds=(0.8, 0.8, 0.04, 0.04),
               spatial_scale=None, head_init_stds=(0.001, 0.001), **kwargs):
    super().__init__(**kwargs)
    self.backbone = backbone
    self.num_frames = int(num_frames)
    self.num_boxes = int(num_boxes)
    self.squeeze = bool(squeeze)
    self.roi_size = int(roi_size)
    self.hidden = int(hidden)
    self.target_means = tuple(float(v) for v in target_means)
    self.target_stds = tuple(float(v) for v in target_stds)
    if spatial_scale is None:
      spatial_scale = 1.0 / getattr(backbone, "spatial_stride", BACKBONE_STRIDE)
    self.spatial_scale = float(spatial_scale)
    self.head_init_stds = tuple(float(v) for v in head_init_stds)

    feat_shape = self._backbone_output_shape()
    self.feature_frames, channels = feat_shape[1], feat_shape[-1]
    kernel_t = self.feature_frames if self.squeeze else 1
    self.temporal_conv = keras.layers.Conv3D(
        channels, (kernel_t, 1, 1), activation="relu", name="head_temporal_conv",
        kernel_initializer=NumpyNormal(mode="fan_out"))
    self.roi_align = ROIAlign(self.roi_size, self.spatial_scale, sampling_ratio=2, aligned=True,
                              name="head_roi_align")
    # Both FCs at N(0, 0.001) (the reference) start the head near a saddle: each layer's
    # gradient is scaled by the other's tiny weights, so escaping takes many steps. Long runs
    # get there; short budgets (the demo) set a larger fc1 std via `head_init_stds`.
    self.fc1 = keras.layers.Dense(self.hidden, activation="relu", name="head_fc1",
                                  kernel_initializer=NumpyNormal(stddev=self.head_init_stds[0]))
    self.fc2 = keras.layers.Dense(self.num_frames * 4, dtype="float32", name="head_fc2",
                                  kernel_initializer=NumpyNormal(stddev=self.head_init_stds[1]))
    # Build everything now: a fully built model lets `fit` skip its symbolic build, which
    # pulls a batch (and breaks under MultiWorkerMirroredStrategy).
    self.temporal_conv.build((None, self.feature_frames, None, None, channels))
    steps = 1 if self.squeeze else self.feature_frames
    self.fc1.build((None, self.roi_size * self.roi_size * channels * steps))
    self.fc2.build((None, self.hidden))
    self.roi_align.built = True
    self.built = True

    self.loss_ctr_tracker = keras.metrics.Mean(name="loss_ctr")
    self.loss_size_tracker = keras.metrics.Mean(name="loss_size")
    self.iou_tracker = keras.metrics.Mean(name="iou")
    self.iou_static_tracker = keras.metrics.Mean(name="iou_static")

  def _backbone_output_shape(self):
    in_shape = tuple(getattr(self.backbone, "input_shape", (None,) * 5))
    h = in_shape[2] or 112
    w = in_shape[3] or 112
    return self.backbone.compute_output_shape((1, self.num_frames, h, w, 3))

  def call(self, inputs, training=None):
    clip, boxes = inputs["clip"], inputs["boxes"]
    if synthesis_stage.has_stage_inputs(inputs):
      # config.synthesis.placement="accelerator": patches and colour jitter run here, in the
      # step, on the uint8 crops the input pipeline decoded (same boxes, same pixels).
      clip = synthesis_stage.finish_clips(inputs)
    features = self.backbone(clip, training=training)
    features = self.temporal_conv(features)                       # [B, T'', h, w, C]
    batch = ops.shape(boxes)[0]
    boxes0 = ops.reshape(ops.cast(boxes[:, :, 0, :], "float32"), (-1, 4))
    index = ops.repeat(ops.arange(batch, dtype="float32"), self.num_boxes)
    rois = ops.concatenate([index[:, None], boxes0], axis=-1)    # [B*N, 5]
    crops = [self.roi_align(features[:, t], rois) for t in range(features.shape[1])]
    crops = crops[0] if len(crops) == 1 else ops.concatenate(crops, axis=-1)
    x = ops.reshape(crops, (-1, crops.shape[1] * crops.shape[2] * crops.shape[3]))
    x = self.fc2(self.fc1(x))
    return ops.reshape(ops.cast(x, "float32"), (-1, self.num_boxes, self.num_frames, 4))

  def decode(self, deltas, boxes0):
    """Predicted deltas `[B, N, T, 4]` + frame-0 boxes `[B, N, 4]` -> boxes `[B, N, T, 4]`."""
    return decode_boxes(deltas, boxes0, self.target_means, self.target_stds)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    del y, sample_weight, training
    boxes = ops.cast(x["boxes"], "float32")
    weights = x["weights"]
    target = ctp_targets(boxes, self.target_means, self.target_stds)
    loss_ctr, loss_size = ctp_losses(y_pred, target, weights)
    loss = loss_ctr + loss_size
    for extra in self.losses:   # regularisers, if any
      loss = loss + ops.cast(ops.sum(extra), "float32")
    decoded = self.decode(y_pred, boxes[:, :, 0])
    self.loss_ctr_tracker.update_state(loss_ctr)
    self.loss_size_tracker.update_state(loss_size)
    self.iou_tracker.update_state(ops.mean(box_iou(decoded[:, :, 1:], boxes[:, :, 1:])))
    self.iou_static_tracker.update_state(
        ops.mean(box_iou(boxes[:, :, :1], boxes[:, :, 1:])))
    return _scale_loss_for_distribution(loss)

  def get_config(self):
    return {
        "name": self.name, "trainable": self.trainable,
        "backbone": keras.saving.serialize_keras_object(self.backbone),
        "num_frames": self.num_frames, "num_boxes": self.num_boxes, "squeeze": self.squeeze,
        "roi_size": self.roi_size, "hidden": self.hidden,
        "target_means": list(self.target_means), "target_stds": list(self.target_stds),
        "spatial_scale": self.spatial_scale, "head_init_stds": list(self.head_init_stds),
    }


def build_ctp_model(model_config, *, clip_shape=(16, 112, 112), num_boxes=3,
                    synchronized_bn=False):
  """CtPModel from `ctp_tf.defaults.ctp_model_config()` for clips of `clip_shape` (T, H, W).

  Example:
  >>> from ctp_tf import defaults
  >>> cfg = defaults.ctp_model_config(); cfg.width_multiplier = 0.125
  >>> model = build_ctp_model(cfg, clip_shape=(8, 32, 32))
  >>> model.feature_frames
  1
  """
  cfg = model_config
  t, h, w = clip_shape
  backbone = build_backbone(
      cfg.arch, "pretrain", backbone_stride=cfg.get("backbone_stride", BACKBONE_STRIDE),
      width_multiplier=cfg.get("width_multiplier", 1.0), bn_epsilon=cfg.get("bn_epsilon", 1e-3),
      synchronized_bn=synchronized_bn, input_shape=(t, h, w, 3))
  return CtPModel(
      backbone, num_frames=t, num_boxes=num_boxes, squeeze=cfg.get("squeeze", True),
      roi_size=cfg.get("roi_size", 5), hidden=cfg.get("hidden", 512),
      target_means=tuple(cfg.get("target_means", (0.0, 0.0, 0.0, 0.0))),
      target_stds=tuple(cfg.get("target_stds", (0.8, 0.8, 0.04, 0.04))),
      head_init_stds=tuple(cfg.get("head_init_stds", (0.001, 0.001))), name="ctp")
