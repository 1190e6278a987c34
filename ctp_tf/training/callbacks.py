"""Keras callbacks for long pretraining runs: step backups, checkpoints, NaN guard, logging.

Every file is written under a temporary name and renamed when complete, so a kill at any
moment leaves either the old or the new file, never half of one. Under multi-worker training
every worker runs the save (reading synchronised variables is a collective op, so all must
take part) but only the chief writes into the workdir; the others write into a private
temporary directory that is deleted at once (what tf.keras' distributed file utilities did).
"""

import glob
import json
import math
import os
import re
import shutil
import tempfile

import keras
import numpy as np
from absl import logging

_CKPT_RE = re.compile(r"^ckpt-(\d+)\.json$")


def write_json_atomic(path, obj):
  """Writes JSON to `path + .tmp-<pid>` then renames it over `path`."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
  os.replace(tmp, path)


def _json_default(o):
  if isinstance(o, (np.floating, np.integer)):
    return o.item()
  if isinstance(o, np.ndarray):
    return o.tolist()
  if hasattr(o, "numpy"):
    return np.asarray(o.numpy()).tolist()
  return str(o)


def remove_stale_temporaries(dirs):
  """Deletes the temporary files a killed run left (`*.tmp-<pid>`, `.tmp-<pid>-*`)."""
  for d in dirs:
    for path in glob.glob(os.path.join(d, "*.tmp-*")) + glob.glob(os.path.join(d, ".tmp-*")):
      if os.path.isfile(path):
        os.remove(path)


def save_weights_atomic(model, path):
  """`model.save_weights` (model and optimizer state) to a temporary name, then rename."""
  d, base = os.path.split(path)
  tmp = os.path.join(d, f".tmp-{os.getpid()}-{base}")
  model.save_weights(tmp, overwrite=True)
  os.replace(tmp, path)


def state_fingerprint(model, config_fingerprint=""):
  """Hash of the config fingerprint and every variable's shape, in order (model + optimizer):
  what a backup must match to be restored into `model`. Shapes, not names: names change with
  the strategy (e.g. synchronised BatchNorm) while the state stays loadable."""
  import hashlib
  items = [config_fingerprint]
  for v in _all_variables(model):
    items.append(str(tuple(v.shape)))
  return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def _all_variables(model):
  variables = list(model.weights)
  if getattr(model, "optimizer", None) is not None:
    seen = {id(v) for v in variables}
    variables += [v for v in model.optimizer.variables if id(v) not in seen]
  return variables


def set_aside(paths, suffix):
  """Renames files to `path + suffix` (`.unreadable`, `.diverged`): no longer listed as
  backups or checkpoints, but not deleted."""
  for path in paths:
    if path and os.path.exists(path):
      os.replace(path, path + suffix)


def global_step(model):
  """Optimizer steps taken so far (the resume position)."""
  opt = model.optimizer
  return int(keras.ops.convert_to_numpy(opt.iterations))


def current_learning_rate(model):
  opt = model.optimizer
  inner = getattr(opt, "inner_optimizer", opt)   # LossScaleOptimizer under mixed_float16
  return float(keras.ops.convert_to_numpy(inner.learning_rate))


def weights_finite(model):
  """True when every model weight is finite (a loss is logged before its update is applied,
  so a finite loss alone does not prove the new weights are)."""
  return all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.weights)


def _finite(logs, key="loss"):
  if not logs or key not in logs:
    return True
  return math.isfinite(float(logs[key]))


class _WriterMixin:
  """Directory to write into: the real one on the chief, a throwaway one elsewhere."""

  def _target_dir(self, real_dir):
    if self.is_chief:
      os.makedirs(real_dir, exist_ok=True)
      return real_dir
    return tempfile.mkdtemp(prefix="ctp_worker_")

  def _done(self, target_dir):
    if not self.is_chief:
      shutil.rmtree(target_dir, ignore_errors=True)


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


class StepBackup(_WriterMixin, keras.callbacks.Callback):
  """Backs up model + optimizer state every `every_steps` optimizer steps and at epoch ends.

  Files: `ckpt-<step>.weights.h5` then `ckpt-<step>.json` (written last, so a JSON file means
  its weights are complete). The newest `keep` are kept. `restore_latest` reads them back.
  """

  def __init__(self, backup_dir, every_steps, steps_per_epoch, *, nan_guard=None,
               is_chief=True, keep=2, fingerprint=None):
    super().__init__()
    self.fingerprint = fingerprint
    self.backup_dir = backup_dir
    self.every_steps = int(every_steps)
    self.steps_per_epoch = int(steps_per_epoch)
    self.nan_guard = nan_guard
    self.is_chief = is_chief
    self.keep = max(1, int(keep))
    self.last_saved = None

  def on_train_begin(self, logs=None):
    self.last_saved = global_step(self.model)

  def on_train_batch_end(self, batch, logs=None):
    if self.every_steps <= 0:
      return
    step = global_step(self.model)
    if step - self.last_saved >= self.every_steps:
      self.save(step, logs)

  def on_epoch_end(self, epoch, logs=None):
    step = global_step(self.model)
    if step != self.last_saved:
      self.save(step, logs)

  def save(self, step, logs=None):
    if (self.nan_guard is not None and self.nan_guard.tripped) or not _finite(logs):
      return
    if not weights_finite(self.model):
      logging.error("Non-finite weights at step %d: not backed up.", step)
      if self.nan_guard is not None:
        self.nan_guard.trip(step)
      return
    target = self._target_dir(self.backup_dir)
    name = os.path.join(target, f"ckpt-{step:09d}")
    save_weights_atomic(self.model, name + ".weights.h5")
    write_json_atomic(name + ".json", {
        "global_step": step, "epoch": step // self.steps_per_epoch,
        "step_in_epoch": step % self.steps_per_epoch, "steps_per_epoch": self.steps_per_epoch,
        "fingerprint": self.fingerprint})
    self.last_saved = step
    if self.is_chief:
      # Only older backups make room: a newer one (from an abandoned future) is never a reason
      # to delete the backup just written.
      older = [b for b in list_backups(self.backup_dir) if b["step"] < step]
      for old in older[self.keep - 1:]:
        for path in (old["json"], old["weights"]):
          if os.path.exists(path):
            os.remove(path)
    self._done(target)


def list_backups(backup_dir):
  """Complete backups in `backup_dir`, newest first: dicts with step, json, weights."""
  out = []
  if not os.path.isdir(backup_dir):
    return out
  for f in os.listdir(backup_dir):
    m = _CKPT_RE.match(f)
    if m:
      base = os.path.join(backup_dir, f[:-len(".json")])
      if os.path.exists(base + ".weights.h5"):
        out.append({"step": int(m.group(1)), "json": base + ".json",
                    "weights": base + ".weights.h5"})
  return sorted(out, key=lambda d: -d["step"])


class StateMismatchError(Exception):
  """A backup or checkpoint written for another model (its fingerprint differs)."""


def list_states(backup_dir, ckpt_dir=None):
  """Backups and epoch checkpoints (with a sidecar JSON), newest step first (a backup before a
  checkpoint of the same step): dicts with step, json, weights, kind."""
  states = [dict(b, kind="backup") for b in list_backups(backup_dir)]
  if ckpt_dir and os.path.isdir(ckpt_dir):
    for w in glob.glob(os.path.join(ckpt_dir, "epoch-*.weights.h5")):
      side = w[:-len(".weights.h5")] + ".json"
      meta = None
      if os.path.exists(side):
        try:
          with open(side) as f:
            meta = json.load(f)
        except (OSError, ValueError):
          meta = None
      if meta and "global_step" in meta:
        states.append({"step": int(meta["global_step"]), "json": side, "weights": w,
                       "kind": "checkpoint"})
      elif not os.path.exists(side):   # written before checkpoints had a sidecar: step unknown
        states.append({"step": -1, "json": None, "weights": w, "kind": "checkpoint"})
  return sorted(states, key=lambda d: (-d["step"], d["kind"] != "backup", d["weights"]),
                reverse=False)


def restore_latest(model, backup_dir, ckpt_dir=None, *, fingerprint=None, set_aside_bad=True):
  """Loads the newest readable backup or epoch checkpoint into `model` (built, optimizer
  built): weights, optimizer state and step together, or nothing.

  A file that cannot be read (damaged disk, truncated) is renamed `*.unreadable` when
  `set_aside_bad` (so it never sorts before readable ones again) and the next older one is
  tried. A state whose recorded fingerprint differs from `fingerprint` raises
  StateMismatchError: it belongs to another model and must not be half-loaded.

  Returns:
    the state's metadata dict (with `path`) or None when there is none.
  """
  variables = _all_variables(model)
  for b in list_states(backup_dir, ckpt_dir):
    try:
      if b["json"]:
        with open(b["json"]) as f:
          meta = json.load(f)
      else:
        meta = {}
    except (OSError, ValueError) as e:
      meta, error = None, e
    if meta is not None:
      recorded = meta.get("fingerprint")
      if fingerprint and recorded and recorded != fingerprint:
        raise StateMismatchError(
            f"{b['weights']} was written for another model or optimizer (fingerprint "
            f"{recorded}, this run {fingerprint})")
      snapshot = [keras.ops.convert_to_numpy(v) for v in variables]
      try:
        model.load_weights(b["weights"])
        error = None
        if b["step"] >= 0 and global_step(model) != b["step"]:
          error = ValueError(f"its optimizer step is {global_step(model)}, not {b['step']}")
      except Exception as e:  # pylint: disable=broad-except  (h5py/Keras raise many types)
        error = e
      if error is not None:   # all or nothing: put every variable back
        for v, value in zip(variables, snapshot):
          v.assign(value)
    if error is not None:
      logging.warning("%s %s could not be read (%s: %s); trying an older one.",
                      b["kind"].capitalize(), b["weights"], type(error).__name__,
                      str(error)[:200])
      if set_aside_bad:
        set_aside([b["weights"], b["json"]], ".unreadable")
      continue
    logging.info("Resumed from %s (step %d).", b["weights"], b["step"])
    meta["path"] = b["weights"]
    return meta
  return None


def set_aside_after(step, backup_dir, ckpt_dir=None, suffix=".diverged"):
  """Renames the backups and checkpoints newer than `step` (e.g. written after the last good
  loss of a diverging run) so a rerun does not resume from them. Returns the renamed paths."""
  moved = []
  for b in list_states(backup_dir, ckpt_dir):
    if b["step"] > step:
      set_aside([b["weights"], b["json"]], suffix)
      moved.append(b["weights"])
  return moved


class Checkpoints(_WriterMixin, keras.callbacks.Callback):
  """`checkpoints/epoch-<e>.weights.h5` every `every_epochs` epochs, keeping the last `keep`."""

  def __init__(self, ckpt_dir, every_epochs=1, keep=3, *, nan_guard=None, is_chief=True,
               fingerprint=None):
    super().__init__()
    self.fingerprint = fingerprint
    self.ckpt_dir = ckpt_dir
    self.every_epochs = max(1, int(every_epochs))
    self.keep = max(1, int(keep))
    self.nan_guard = nan_guard
    self.is_chief = is_chief
    self.last_good = latest_checkpoint(ckpt_dir)

  def on_epoch_end(self, epoch, logs=None):
    if (epoch + 1) % self.every_epochs:
      return
    if (self.nan_guard is not None and self.nan_guard.tripped) or not _finite(logs):
      return
    if not weights_finite(self.model):
      if self.nan_guard is not None:
        self.nan_guard.trip(global_step(self.model))
      return
    target = self._target_dir(self.ckpt_dir)
    path = os.path.join(target, f"epoch-{epoch + 1:04d}.weights.h5")
    save_weights_atomic(self.model, path)
    # The sidecar (written last) makes the checkpoint a resume candidate.
    write_json_atomic(path[:-len(".weights.h5")] + ".json", {
        "global_step": global_step(self.model), "epoch": epoch + 1,
        "fingerprint": self.fingerprint})
    if self.is_chief:
      self.last_good = path
      for old in sorted(glob.glob(os.path.join(self.ckpt_dir, "epoch-*.weights.h5")))[:-self.keep]:
        os.remove(old)
        side = old[:-len(".weights.h5")] + ".json"
        if os.path.exists(side):
          os.remove(side)
    self._done(target)


def latest_checkpoint(ckpt_dir):
  files = sorted(glob.glob(os.path.join(ckpt_dir, "epoch-*.weights.h5")))
  return files[-1] if files else None


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
