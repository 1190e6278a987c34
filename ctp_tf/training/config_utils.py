"""Config files and `--config.a.b=v` overrides: loading, key checks with close-key hints."""

import difflib
import importlib.util
import os
import re

import ml_collections

from ctp_tf.errors import UserError


class ConfigKeyError(UserError, KeyError):
  """An override names a key the config does not have."""

  def __str__(self):  # KeyError quotes its message; show it plainly.
    return str(self.args[0])


class ConfigFileError(UserError, FileNotFoundError):
  """The config file does not exist."""

  def __str__(self):
    return str(self.args[0])


class ConfigValueError(UserError, ValueError):
  """A config value out of its range (e.g. `data.clip_len=0`)."""


# Where a config named by file name is looked up when the path given does not exist: the
# repository's `configs/` (a source checkout, `pip install -e .`), then the copy the wheel ships
# as `ctp_tf/configs/` (`pip install .`; setup.py maps the folder into the package).
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIRS = (os.path.join(os.path.dirname(_PACKAGE), "configs"),
               os.path.join(_PACKAGE, "configs"))


def find_config(path):
  """The config file `path` names, with its `:arg` kept (big_vision's `file.py:arg`).

  `path` itself when it exists; else the file of the same name (`configs/demo.py`, `demo.py`
  or just `demo`) in `CONFIG_DIRS`, so `--config=configs/demo.py` works from any directory and
  from an installed wheel. Unknown names come back unchanged (the loader names them).
  """
  arg = None
  if ":" in path and not os.path.exists(path):
    path, arg = path.split(":", 1)
  if not os.path.exists(path):
    name = os.path.basename(path)
    name = name if name.endswith(".py") else f"{name}.py"
    path = next((p for p in (os.path.join(d, name) for d in CONFIG_DIRS) if os.path.isfile(p)),
                path)
  return path if arg is None else f"{path}:{arg}"


def load_config_file(path):
  """Imports a config file (`path[:arg]`, found by `find_config`) and returns its
  `get_config()` (or `get_config(arg)`) ConfigDict."""
  arg = None
  path = find_config(path)
  if ":" in path and not os.path.exists(path):
    path, arg = path.split(":", 1)
  if not os.path.exists(path):
    raise ConfigFileError(f"Config file {path!r} does not exist.")
  spec = importlib.util.spec_from_file_location("_ctp_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_config", None)):
    raise ConfigFileError(f"Config file {path!r} has no get_config().")
  return module.get_config(arg) if arg is not None else module.get_config()


def leaf_keys(config, prefix=""):
  """Dotted paths of every field (`train.batch_size`, ...)."""
  out = []
  for k, v in config.items():
    key = f"{prefix}{k}"
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.extend(leaf_keys(v, key + "."))
    else:
      out.append(key)
  return out


def check_key(config, dotted, flag_name="config"):
  """Raises ConfigKeyError listing close keys when `dotted` is not a field of `config`."""
  keys = leaf_keys(config)
  if dotted in keys:
    return
  node = config
  for part in dotted.split("."):
    if isinstance(node, (ml_collections.ConfigDict, dict)) and part in node:
      node = node[part]
    else:
      break
  else:
    return   # a whole sub-dict
  close = difflib.get_close_matches(dotted, keys, n=5, cutoff=0.75)
  # Also match on the last component, so `--config.bacth_size` finds `train.batch_size`.
  last = dotted.split(".")[-1]
  close += [k for k in keys if k not in close and
            difflib.get_close_matches(last, [k.split(".")[-1]], n=1, cutoff=0.75)][:5]
  hint = ("Close keys: " + ", ".join(f"--{flag_name}.{k}" for k in close)) if close else \
      f"Keys under --{flag_name}: " + ", ".join(keys[:40])
  raise ConfigKeyError(f"Unknown config key --{flag_name}.{dotted}. {hint}")


_OVERRIDE = re.compile(r"^--?([A-Za-z_][\w]*)\.([\w.]+)(=.*)?$")


def check_override_flags(argv, config, flag_name="config"):
  """Checks every `--config.a.b[=v]` in `argv` against `config` before absl parses them."""
  for a in argv[1:]:
    m = _OVERRIDE.match(a)
    if m and m.group(1) == flag_name:
      check_key(config, m.group(2), flag_name)


def config_path_from_argv(argv, default, flag_name="config", *, resolve=False):
  """The `--config=PATH` (or `--config PATH`) value in argv, else `default`.

  resolve: replace PATH in `argv` (in place) by `find_config(PATH)`, so that the config flag,
    which opens the path itself, finds a config named relative to the repository or shipped
    with the package.
  """
  for i, a in enumerate(argv[1:], start=1):
    if a.startswith(f"--{flag_name}="):
      path = a.split("=", 1)[1]
      if resolve:
        path = find_config(path)
        argv[i] = f"--{flag_name}={path}"
      return path
    if a == f"--{flag_name}" and i + 1 < len(argv):
      if resolve:
        argv[i + 1] = find_config(argv[i + 1])
      return argv[i + 1]
  return default


# Fields that must be positive integers wherever a config has them.
_POSITIVE_INTS = ("data.clip_len", "data.crop_size", "data.num_test_clips", "data.stride",
                  "train.epochs", "train.steps_per_execution", "train.eval_batch_size",
                  "synthesis.num_trajectories", "model.hidden", "model.roi_size")
_NON_NEGATIVE_INTS = ("train.steps_per_epoch", "train.batch_size", "train.global_batch_size",
                      "train.backup_every_steps", "data.shuffle_buffer",
                      "train.eval_every_epochs", "train.eval_max_videos")
_POSITIVE_INT_LISTS = ("data.strides", "data.short_sides", "data.test_resize")


def _get(config, dotted):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return None
    node = node[part]
  return node


def validate(config):
  """Raises ConfigValueError (one line, naming the --config key) for values out of range."""
  def bad(key, value, want):
    raise ConfigValueError(f"--config.{key}={value!r}: must be {want}.")

  for key in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
    v = _get(config, key)
    if v is None:
      continue
    positive = key in _POSITIVE_INTS
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or \
        (v <= 0 if positive else v < 0):
      bad(key, v, "a positive integer" if positive else "a non-negative integer")
  for key in _POSITIVE_INT_LISTS:
    v = _get(config, key)
    if v is None:
      continue
    if isinstance(v, (int, float)):
      v = (v,)
    if not len(v) or any(isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0
                         for x in v):
      bad(key, tuple(v), "a non-empty list of positive numbers")
  for key in ("model.width_multiplier", "optimizer.lr"):
    v = _get(config, key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or
                          not v > 0 or v != v or v == float("inf")):
      bad(key, v, "a finite positive number")
  v = _get(config, "train.max_loss")
  if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
    bad("train.max_loss", v, "a positive number (the divergence bound)")
  crop, sides = _get(config, "data.crop_size"), _get(config, "data.short_sides")
  if crop is not None and sides is not None and min(sides) < crop:
    bad("data.short_sides", tuple(sides), f"at least data.crop_size={crop}")
