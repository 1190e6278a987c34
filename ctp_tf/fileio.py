"""File writes that a kill cannot leave half-done: the one owner of atomic writes.

Every writer here writes `<path>.tmp-<pid>` (or `.tmp-<pid>-<name>` for files whose suffix
matters, as Keras' `.weights.h5`) and renames it over `path`: a reader sees the old file or the
new one, never half of one. `remove_stale_temporaries` clears what a killed writer left.

Example:
```python
from ctp_tf import fileio
fileio.write_json_atomic("runs/x/metrics.json", {"top1": 0.5})
```
"""

import glob
import json
import os

import numpy as np


def temporary_name(path):
  """The name a file is written under before it is renamed to `path`."""
  return f"{path}.tmp-{os.getpid()}"


def write_text_atomic(path, text, mode="w"):
  """Writes `text` (str, or bytes with mode="wb") to `path` through a temporary name."""
  tmp = temporary_name(path)
  with open(tmp, mode) as f:
    f.write(text)
  os.replace(tmp, path)


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


def save_atomic(save, path, *, makedirs=True):
  """Calls `save(tmp)` with a temporary name that keeps `path`'s extension (libraries pick the
  format from it: `.png`, `.gif`, `.npz`), then renames it to `path`. Returns `path`."""
  if makedirs:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = temporary_name(path) + os.path.splitext(path)[1]
  save(tmp)
  os.replace(tmp, path)
  return path
