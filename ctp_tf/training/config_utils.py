"""Config files and `--config.a.b=v` overrides: loading, key checks with close-key hints."""

import difflib
import importlib.util
import os
import re

import ml_collections


class ConfigKeyError(KeyError):
  """An override names a key the config does not have."""

  def __str__(self):  # KeyError quotes its message; show it plainly.
    return str(self.args[0])


def load_config_file(path):
  """Imports a config file (`path[:arg]`) and returns its `get_config()` ConfigDict."""
  arg = None
  if ":" in path and not os.path.exists(path):
    path, arg = path.split(":", 1)
  if not os.path.exists(path):
    raise FileNotFoundError(f"Config file {path!r} does not exist.")
  spec = importlib.util.spec_from_file_location("_ctp_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
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


def config_path_from_argv(argv, default, flag_name="config"):
  """The `--config=PATH` (or `--config PATH`) value in argv, else `default`."""
  for i, a in enumerate(argv[1:], start=1):
    if a.startswith(f"--{flag_name}="):
      return a.split("=", 1)[1]
    if a == f"--{flag_name}" and i + 1 < len(argv):
      return argv[i + 1]
  return default
