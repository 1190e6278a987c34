"""The checkpoint format: step backups and epoch checkpoints, fingerprinted, restored all or
nothing. Logging callbacks live in `callbacks.py`; this module is what resuming and the export
read (`ctp_tf.training.export.latest_weights`).

Files: `backup/ckpt-<step>.weights.h5` + `.json` (step, epoch, fingerprint; written last, so a
JSON means the weights are complete), `checkpoints/epoch-<e>.weights.h5` + `.json`.
Under multi-worker training every worker runs the save (reading synchronised variables is a
collective op, so all must take part) but only the chief writes into the workdir; the others
write into a private temporary directory that is deleted at once.
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

from ctp_tf.fileio import save_weights_atomic, write_json_atomic

_CKPT_RE = re.compile(r"^ckpt-(\d+)\.json$")


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
