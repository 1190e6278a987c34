"""The embedded demo data, made and converted on first use and cached.

`ensure_demo_data()` returns a shard directory: `$CTP_TF_DEMO_DIR` or `~/.cache/ctp_tf/demo`
(`<dir>/raw`: the encoded demo videos and UCF-101-style split files; `<dir>/shards`: the
TFRecords). It calls the same functions as `scripts/make_demo_data.py` and
`scripts/make_tfrecords.py --dataset=ucf101`, so the demo takes exactly the path real UCF-101
data takes. The shards are converted into a temporary directory renamed when complete (a
kill leaves no half cache); the video maker itself keeps complete files and resumes.
"""

import os
import shutil


def is_demo_config(config_path):
  """Whether a config file is one of the demo's (`configs/demo.py`, `configs/finetune_demo.py`,
  or any config whose file name has the word `demo`): the configs made for the demo data."""
  stem = os.path.splitext(os.path.basename(str(config_path).split(":")[0]))[0]
  return "demo" in stem.split("_")


def data_dir_for(config_path, cache_dir=None):
  """The data `scripts/pretrain.py` and `scripts/finetune.py` use when no --data_dir is given:
  the demo shards (made and cached on first use) for a demo config, else a UserError.

  Args:
    config_path: the script's --config file.
    cache_dir: cache root (default `default_demo_dir()`).
  """
  from ctp_tf.errors import UserError  # noqa: PLC0415
  if not is_demo_config(config_path):
    raise UserError(f"--data_dir is required: only the demo configs (configs/demo.py, "
                    f"configs/finetune_demo.py) come with data, not {config_path}.")
  return ensure_demo_data(cache_dir)


def default_demo_dir():
  return os.environ.get("CTP_TF_DEMO_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "ctp_tf", "demo")


def _shard_order(shards):
  from ctp_tf.data import shards as shards_lib  # noqa: PLC0415
  from ctp_tf.errors import DataError  # noqa: PLC0415
  try:
    return shards_lib.load_dataset_json(shards).get("shard_order")
  except DataError:     # missing or damaged: convert again
    return None


def ensure_demo_data(cache_dir=None, *, seed=0, workers=None, progress=True, **sizes):
  """Makes (once) and returns the demo shard directory under `cache_dir`.

  Args:
    cache_dir: cache root (default `default_demo_dir()`).
    seed: demo video seed.
    workers: conversion processes (default: all cores).
    progress: progress lines on stderr.
    **sizes: passed to `ctp_tf.demo.data.make_demo_data` (train_per_class, ...).
  """
  from ctp_tf.data import convert, convert_core  # noqa: PLC0415
  from ctp_tf.demo import data as demo_data  # noqa: PLC0415
  cache_dir = os.path.abspath(cache_dir or default_demo_dir())
  shards = os.path.join(cache_dir, "shards")
  raw = os.path.join(cache_dir, "raw")
  version = demo_data.stored_version(raw)
  if version == demo_data.VERSION and os.path.exists(os.path.join(shards, "dataset.json")):
    if _shard_order(shards) == convert_core.SHARD_ORDER:
      return shards
    # Shards of an older converter (class-sorted): convert the kept videos again.
    if progress:
      print(f"demo data: the shards in {shards} are in an older order; converting again",
            flush=True)
  if version not in (None, demo_data.VERSION):
    # Our own cache, made by an older package: remake it rather than train on stale videos.
    if progress:
      print(f"demo data: the cache in {cache_dir} is version {version}, remaking version "
            f"{demo_data.VERSION}", flush=True)
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(shards, ignore_errors=True)
  demo_data.make_demo_data(raw, seed=seed, progress=progress, **sizes)
  tmp = f"{shards}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  convert.make_tfrecords("ucf101", os.path.join(raw, "videos"), tmp, split_dir=raw, split=1,
                         resize_short=0, workers=workers or os.cpu_count() or 1,
                         progress=progress)
  shutil.rmtree(shards, ignore_errors=True)
  os.replace(tmp, shards)
  return shards
