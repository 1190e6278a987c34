"""What a workdir belongs to, and who uses it: its kind, config fingerprint and lock.

`claim(workdir, kind, fields)` (a context manager, taken by pretraining and finetuning before
they write anything) makes sure that:
- only one run uses the workdir: `WORKDIR/.lock` holds the owner's pid and host; a second run
  stops at once naming that pid, and a lock left by a killed run (its pid is dead) is taken over;
- a workdir keeps one kind (`pretrain` or `finetune`): a run of the other kind is refused (it
  would overwrite `config.json` and checkpoints of the first);
- a workdir keeps one model: `fields` (the model-relevant config: architecture, width, clip
  shape, boxes or classes) are hashed into a fingerprint stored in `WORKDIR/workdir.json`; a
  rerun with other fields is refused with a message naming the keys that differ and how to
  start afresh (a new --workdir, or --overwrite which clears the workdir first). Changing
  anything else (lr, epochs, ...) resumes as before.
"""

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time

from absl import logging

from ctp_tf import fileio
from ctp_tf.errors import WorkdirError

KIND_FILE = "workdir.json"
LOCK_FILE = ".lock"
KINDS = ("pretrain", "finetune")


def fingerprint(fields):
  """A short stable hash of a JSON-able dict."""
  text = json.dumps(fields, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _norm(fields):
  return json.loads(json.dumps(fields, sort_keys=True, default=str))   # tuples -> lists


def pretrain_fields(config):
  """The parts of a pretraining config that decide the model's variables."""
  c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return _norm({"model": c.get("model", {}), "clip_len": c["data"]["clip_len"],
          "crop_size": c["data"]["crop_size"],
          "num_trajectories": c.get("synthesis", {}).get("num_trajectories")})


def finetune_fields(config, classes):
  c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return _norm({"model": c.get("model", {}), "clip_len": c["data"]["clip_len"],
                "crop_size": c["data"]["crop_size"], "classes": list(classes)})


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_info(workdir):
  """(kind or None, fields or None) of an existing workdir; older workdirs without
  workdir.json are recognised by their files."""
  info = _read_json(os.path.join(workdir, KIND_FILE))
  if isinstance(info, dict) and info.get("kind") in KINDS:
    return info["kind"], info.get("fields")
  cfg = _read_json(os.path.join(workdir, "config.json"))
  if isinstance(cfg, dict) and cfg.get("format") == "ctp_tf.encoder_export":
    return "export", None
  if isinstance(cfg, dict) and isinstance(cfg.get("config"), dict):
    try:
      if "num_classes" in cfg or "classes" in cfg:
        return "finetune", finetune_fields(cfg["config"], cfg.get("classes", []))
      if "run" in cfg:
        return "pretrain", pretrain_fields(cfg["config"])
    except (KeyError, TypeError):
      pass
  if os.path.exists(os.path.join(workdir, "history.json")):
    return "finetune", None
  return None, None


def kind_of(workdir):
  return read_info(workdir)[0]


_NOUNS = {"pretrain": "pretraining", "finetune": "finetuning"}
_WRITERS = {"pretrain": "scripts/pretrain.py", "finetune": "scripts/finetune.py"}


def read_config(workdir, kind, *, check, other_kinds, error=WorkdirError, missing_error=None):
  """The `config.json` dict of a `kind` workdir ("pretrain" or "finetune"), for its readers.

  One-line `error`s: the directory is of another kind (`other_kinds[that kind]` completes
  "--workdir=W is ..."), has no config.json (`missing_error`, default `error`), or one that
  `check(info)` rejects by raising OSError, ValueError, KeyError, TypeError or AttributeError.
  """
  other = kind_of(workdir)
  if other != kind and other in other_kinds:
    raise error(f"--workdir={workdir} is {other_kinds[other]}")
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.exists(cfg_path):
    raise (missing_error or error)(f"{cfg_path} not found: --workdir must be a {_NOUNS[kind]} "
                                   f"workdir (written by {_WRITERS[kind]}).")
  try:
    with open(cfg_path) as f:
      info = json.load(f)
    check(info)
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise error(f"{cfg_path} is not a {_NOUNS[kind]} config ({type(e).__name__}: {e}).") \
        from None
  return info


def _diff(old, new, prefix=""):
  """Dotted keys whose values differ between two nested dicts."""
  out = []
  for k in sorted(set(old) | set(new), key=str):
    a, b = old.get(k), new.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k} {a!r} -> {b!r}")
  return out


def _pid_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _acquire(workdir):
  path = os.path.join(workdir, LOCK_FILE)
  me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
  for _ in range(5):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      owner = _read_json(path)
      if owner is None:
        # Being written this instant, or garbage: give a fresh writer a moment.
        if time.time() - os.path.getmtime(path) < 5:
          time.sleep(0.5)
          continue
      else:
        pid, host = owner.get("pid"), owner.get("host")
        if host != me["host"]:
          raise WorkdirError(
              f"--workdir={workdir} is in use by pid {pid} on host {host} ({path}); wait for "
              "that run to end, or delete the lock file if it is dead.")
        if isinstance(pid, int) and pid != me["pid"] and _pid_alive(pid):
          raise WorkdirError(
              f"--workdir={workdir} is in use by another run (pid {pid}, started "
              f"{time.ctime(owner.get('since', 0))}); wait for it to end or use another "
              "--workdir.")
      # A stale lock (its run was killed): take it over. The rename lets one taker win.
      stale = f"{path}.stale-{os.getpid()}"
      try:
        os.rename(path, stale)
        os.remove(stale)
        logging.warning("Took over the stale lock of %s (%s).", workdir, owner)
      except FileNotFoundError:
        pass
      continue
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)
    return path
  raise WorkdirError(f"could not lock --workdir={workdir} ({path}).")


def _release(path):
  owner = _read_json(path)
  if owner and owner.get("pid") == os.getpid():
    try:
      os.remove(path)
    except FileNotFoundError:
      pass


def _clear(workdir):
  """--overwrite: removes what earlier runs wrote (the lock file stays)."""
  for name in os.listdir(workdir):
    if name == LOCK_FILE:
      continue
    p = os.path.join(workdir, name)
    if os.path.isdir(p) and not os.path.islink(p):
      shutil.rmtree(p)
    else:
      os.remove(p)


@contextlib.contextmanager
def claim(workdir, kind, fields, *, overwrite=False, chief=True):
  """Locks `workdir` for a run of `kind` whose model is described by `fields` (see module doc).

  Raises:
    WorkdirError: in use, of the other kind, or of another model (without `overwrite`).
  """
  assert kind in KINDS, kind
  other = {"pretrain": "scripts/pretrain.py", "finetune": "scripts/finetune.py"}
  if not chief:   # other workers of a multi-worker run: the chief holds the lock
    yield
    return
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir} exists and is not a directory.")
  os.makedirs(workdir, exist_ok=True)
  lock = _acquire(workdir)
  try:
    old_kind, old_fields = read_info(workdir)
    if old_kind == "export" or os.path.exists(os.path.join(workdir, "dataset.json")):
      what = "an encoder export" if old_kind == "export" else "a converted dataset"
      raise WorkdirError(f"--workdir={workdir} is {what}; pass a workdir of its own (a new "
                         "directory).")
    if old_kind and old_kind != kind:
      raise WorkdirError(
          f"--workdir={workdir} is a {old_kind} workdir (written by {other[old_kind]}); "
          f"{kind} needs a workdir of its own: pass another --workdir.")
    if overwrite:
      _clear(workdir)
    elif old_fields is not None and fingerprint(old_fields) != fingerprint(fields):
      changes = "; ".join(_diff(old_fields, fields)[:6])
      raise WorkdirError(
          f"--workdir={workdir} holds a {kind} run of another model ({changes}); its "
          "backups cannot be resumed with this config. Start afresh with a new --workdir, or "
          "pass --overwrite to clear this one.")
    fileio.write_json_atomic(os.path.join(workdir, KIND_FILE),
                             {"kind": kind, "fingerprint": fingerprint(fields), "fields": fields})
    yield
  finally:
    _release(lock)
