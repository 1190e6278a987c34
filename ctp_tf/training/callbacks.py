"""Keras callbacks for training runs: the NaN/divergence guard and logging (CSV, TensorBoard
scalars and box images). The checkpoint format (backups, restore) is `checkpoint.py`.

Every file is written under a temporary name and renamed when complete, so a kill at any
moment leaves either the old or the new file, never half of one. Under multi-worker training
every worker runs the save (reading synchronised variables is a collective op, so all must
take part) but only the chief writes into the workdir; the others write into a private
temporary directory that is deleted at once (what tf.keras' distributed file utilities did).
"""

import math
import os

import keras
import numpy as np
from absl import logging

from ctp_tf.training.checkpoint import global_step

def current_learning_rate(model):
  opt = model.optimizer
  inner = getattr(opt, "inner_optimizer", opt)   # LossScaleOptimizer under mixed_float16
  return float(keras.ops.convert_to_numpy(inner.learning_rate))


class NanGuard(keras.callbacks.Callback):
  """Stops training at the first non-finite loss, or loss above `max_loss` (divergence); the
  savers below skip that state.

  The batch logs hold the epoch's running mean; the guard recovers each batch's own loss from
  it, so a spike is seen at its step. `last_good_step` is the newest step whose weights were
  followed by an in-bound loss: backups after it are not "good" (`set_aside_after`).

  Put it first in the callback list: the backup and checkpoint callbacks read `tripped`.
  """

  def __init__(self, max_loss=None):
    super().__init__()
    self.max_loss = float(max_loss) if max_loss else None
    self.tripped = False
    self.step = None
    self.reason = None
    self.last_good_step = None
    self._seen = (0, 0.0)

  def on_train_begin(self, logs=None):
    if self.last_good_step is None:
      self.last_good_step = global_step(self.model)   # the initial or restored weights

  def on_epoch_begin(self, epoch, logs=None):
    self._seen = (0, 0.0)   # Keras resets its running means every epoch

  def on_train_batch_end(self, batch, logs=None):
    if self.tripped or not logs or "loss" not in logs:
      return
    step = global_step(self.model)
    mean = float(logs["loss"])
    n = int(batch) + 1
    seen_n, seen_total = self._seen
    if n <= seen_n:
      seen_n, seen_total = 0, 0.0
    batch_loss = (n * mean - seen_total) / (n - seen_n) if math.isfinite(mean) else mean
    self._seen = (n, n * mean)
    if not math.isfinite(mean) or not math.isfinite(batch_loss):
      logging.error("Loss is %s at step %d: stopping.", logs.get("loss"), step)
      self.trip(step, "nan")
    elif self.max_loss is not None and batch_loss > self.max_loss:
      logging.error("Loss %.4g at step %d is above train.max_loss=%g: stopping.", batch_loss,
                    step, self.max_loss)
      self.trip(step, "diverged")
    else:
      self.last_good_step = step - 1   # the weights before this step gave an in-bound loss

  def trip(self, step, reason="nan"):
    if not self.tripped:
      self.tripped = True
      self.step = step
      self.reason = reason
    self.model.stop_training = True


class StepLogs(keras.callbacks.Callback):
  """Adds `learning_rate` and `global_step` to the epoch logs (CSV and TensorBoard see them).

  Must come before CSVLogger in the callback list: callbacks share the logs dict.
  """

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["learning_rate"] = current_learning_rate(self.model)
      logs["global_step"] = global_step(self.model)


class CSVLog(keras.callbacks.Callback):
  """One row per epoch appended to `path` (a restart appends below the rows already there).

  Keras' CSVLogger adds empty `val_*` columns when there is no validation; this one writes the
  logged keys only. The header is written when the file is new; a later run whose keys differ
  starts a new header line so no row is misread.
  """

  def __init__(self, path):
    super().__init__()
    self.path = path
    self._keys = None

  def on_epoch_end(self, epoch, logs=None):
    import csv
    logs = dict(logs or {})
    keys = ["epoch"] + sorted(logs)
    new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
    if self._keys is None and not new:
      with open(self.path) as f:
        header = None
        for row in csv.reader(f):
          if row and row[0] == "epoch":
            header = row
        self._keys = header
    with open(self.path, "a", newline="") as f:
      w = csv.writer(f)
      if new or self._keys != keys:
        w.writerow(keys)
        self._keys = keys
      w.writerow([epoch + 1] + [float(logs[k]) for k in keys[1:]])
      f.flush()


class ScalarSummaries(keras.callbacks.Callback):
  """TensorBoard scalars keyed by the global step (so a resumed run continues the curves).

  Every `every_steps` steps: `batch/<metric>` and `learning_rate`; at epoch end
  `epoch/<metric>` (the epoch means, including `iou` beside `iou_static`).
  """

  def __init__(self, log_dir, every_steps=10):
    super().__init__()
    self.log_dir = log_dir
    self.every_steps = max(1, int(every_steps))
    self._writer = None

  def _w(self):
    import tensorflow as tf
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "train"))
    return self._writer

  def on_train_batch_end(self, batch, logs=None):
    import tensorflow as tf
    step = global_step(self.model)
    if step % self.every_steps or not logs:
      return
    with self._w().as_default(step=step):
      for k, v in logs.items():
        write_scalar(f"batch/{k}", v, step)
      write_scalar("learning_rate", current_learning_rate(self.model), step)

  def on_epoch_end(self, epoch, logs=None):
    import tensorflow as tf
    step = global_step(self.model)
    with self._w().as_default(step=step):
      for k, v in (logs or {}).items():
        write_scalar(f"epoch/{k}", v, step)
      write_scalar("epoch", epoch + 1, step)
    self._w().flush()

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.flush()


def _summary_metadata(plugin):
  from tensorflow.core.framework import summary_pb2
  m = summary_pb2.SummaryMetadata()
  m.plugin_data.plugin_name = plugin
  return m.SerializeToString()


def write_scalar(tag, value, step):
  """A TensorBoard scalar without the tensorboard package (not a dependency of ours):
  `tf.summary.write` with the scalars plugin's metadata, as tf.summary.scalar writes it."""
  import tensorflow as tf
  tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                   metadata=_summary_metadata("scalars"))


def write_images(tag, images, step):
  """TensorBoard images (float [B,H,W,3] in [0, 1]) via the images plugin's tensor format:
  [width, height, png_1, ..., png_B] strings."""
  import tensorflow as tf
  images = tf.image.convert_image_dtype(tf.convert_to_tensor(images), tf.uint8, saturate=True)
  pngs = [tf.io.encode_png(im) for im in tf.unstack(images)]
  h, w = int(images.shape[1]), int(images.shape[2])
  tensor = tf.stack([tf.constant(str(w)), tf.constant(str(h))] + pngs)
  tf.summary.write(tag, tensor, step=step, metadata=_summary_metadata("images"))


def draw_boxes(clips, true_boxes, pred_boxes, frames=None):
  """uint8 clips [B,T,H,W,3], boxes [B,N,T,4] (x1,y1,x2,y2 pixels) -> float [B,H,W*k,3] in
  [0, 1]: the chosen frames side by side, true boxes green, predicted boxes red."""
  import tensorflow as tf
  clips = np.asarray(clips)
  b, t, h, w, _ = clips.shape
  frames = frames or sorted({0, t // 2, t - 1})
  rows = []
  for i in range(b):
    tiles = []
    for f in frames:
      img = tf.image.convert_image_dtype(clips[i, f], tf.float32)[None]

      def norm(bx):
        bx = np.asarray(bx, np.float32)
        return np.stack([bx[:, 1] / h, bx[:, 0] / w, bx[:, 3] / h, bx[:, 2] / w], -1)[None]

      img = tf.image.draw_bounding_boxes(img, norm(true_boxes[i, :, f]), [[0.0, 1.0, 0.0, 1.0]])
      img = tf.image.draw_bounding_boxes(img, norm(pred_boxes[i, :, f]), [[1.0, 0.0, 0.0, 1.0]])
      tiles.append(img[0])
    rows.append(tf.concat(tiles, axis=1))
  return tf.stack(rows)


class BoxImages(keras.callbacks.Callback):
  """A few synthesised clips with true (green) and predicted (red) boxes, to TensorBoard.

  `batch` is a fixed numpy batch dict (clip, boxes, weights); the model must have
  `decode(deltas, boxes0)` (CtPModel). Drawn at the first and every `every_epochs`-th epoch.
  """

  def __init__(self, log_dir, batch, every_epochs=1, max_clips=3):
    super().__init__()
    self.log_dir = log_dir
    self.batch = {k: np.asarray(v)[:max_clips] for k, v in batch.items()}
    self.every_epochs = max(1, int(every_epochs))
    self._failed = False
    self._writer = None

  def on_epoch_end(self, epoch, logs=None):
    if self._failed or (epoch + 1) % self.every_epochs:
      return
    import tensorflow as tf
    try:
      deltas = self.model(self.batch, training=False)
      pred = keras.ops.convert_to_numpy(self.model.decode(deltas, self.batch["boxes"][:, :, 0]))
      images = draw_boxes(self.batch["clip"], self.batch["boxes"], pred)
    except Exception as e:  # pylint: disable=broad-except
      # Pictures are a convenience: never let them kill a days-long run.
      logging.warning("Box images disabled: %s", e)
      self._failed = True
      return
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
    with self._writer.as_default(step=global_step(self.model)):
      write_images("boxes/true_green_pred_red", images, global_step(self.model))
    self._writer.flush()


def patch_for_multi_worker(model):
  """Makes Keras 3 `fit` run under MultiWorkerMirroredStrategy (see notes/keras3-multiworker).

  1. `_maybe_symbolic_build` feeds a PerReplica batch to a symbolic build and fails; the model
     is already built (and its optimizer too) when we train, so it becomes a no-op.
  2. The TF trainer reduces the step logs with `strategy.reduce("MEAN", v, axis=0)`, which
     needs a leading axis: the logs leave `train_step` as shape-[1] tensors.
  Private Keras hooks: pinned to keras 3.15 by setup.py and by tests/test_distributed.py.
  """
  from keras import ops
  model._maybe_symbolic_build = lambda *a, **k: None
  original = model.train_step

  def train_step(data):
    logs = original(data)
    return {k: ops.reshape(v, (1,)) for k, v in logs.items()}

  model.train_step = train_step
  return model
