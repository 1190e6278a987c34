"""`tf.distribute` strategy from a flag value, with checks that fail before anything is built.

`get_strategy("auto")` takes `MirroredStrategy` over all GPUs when more than one is visible and
the default (single device) strategy otherwise. `multi_worker` reads `TF_CONFIG`; `tpu` connects
through `TPUClusterResolver`. A strategy the machine cannot run raises `StrategyError` naming
what is missing, so a run dies in its first second rather than after the model is built.
"""

import json
import os

import tensorflow as tf

from ctp_tf.errors import UserError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


class StrategyError(UserError, ValueError):
  """The requested strategy cannot run on this machine or with this environment."""


def _tf_config():
  """Parses and checks TF_CONFIG; returns the dict or raises StrategyError."""
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    raise StrategyError(
        "--strategy=multi_worker needs the TF_CONFIG environment variable, e.g. "
        '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", '
        '"index": 0}}; it is not set.')
  try:
    cfg = json.loads(raw)
  except json.JSONDecodeError as e:
    raise StrategyError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from None
  cluster = cfg.get("cluster") or {}
  task = cfg.get("task") or {}
  workers = list(cluster.get("worker", [])) + list(cluster.get("chief", []))
  if not workers:
    raise StrategyError(f"TF_CONFIG has no cluster.worker (or chief) list: {raw[:200]!r}")
  if task.get("type") not in ("worker", "chief") or not isinstance(task.get("index"), int):
    raise StrategyError(
        f'TF_CONFIG task must be {{"type": "worker"|"chief", "index": i}}; got {task!r}')
  return cfg


def get_strategy(name="auto", tpu=None):
  """Returns the `tf.distribute.Strategy` for `name` (one of `STRATEGIES`).

  Args:
    name: `auto` (mirrored over GPUs when more than one is visible, else default), `default`
      (one device), `mirrored` (all GPUs, or all logical CPU devices when there is no GPU),
      `multi_worker` (`TF_CONFIG`), `tpu`.
    tpu: TPU address for `TPUClusterResolver` (`""`/None: the local TPU VM or the environment).

  Example:
    >>> strategy = get_strategy("default")
    >>> strategy.num_replicas_in_sync
    1
  """
  if name not in STRATEGIES:
    raise StrategyError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
  if name == "tpu":
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
      raise StrategyError(
          f"--strategy=tpu could not reach a TPU (--tpu={tpu!r}): {e}. Use --strategy=auto on "
          "machines without a TPU.") from None
    return tf.distribute.TPUStrategy(resolver)
  if name == "multi_worker":
    _tf_config()
    # Collective ops between workers: NCCL on GPUs, ring on CPU (AUTO picks).
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    if len(gpus) > 1:
      return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
  if name == "default":
    return tf.distribute.get_strategy()
  # mirrored
  if gpus:
    return tf.distribute.MirroredStrategy()
  cpus = tf.config.list_logical_devices("CPU")
  # Several logical CPU devices (tests, `tf.config.set_logical_device_configuration`) are
  # mirrored over; one CPU still works, as a one-replica MirroredStrategy.
  return tf.distribute.MirroredStrategy(devices=[d.name for d in cpus])


def num_workers(strategy):
  """Number of worker processes (input pipelines) of `strategy`."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
    spec = resolver.cluster_spec().as_dict()
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))
  return 1


def worker_index(strategy):
  """This process's index among the workers (0 on single-process strategies)."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return int(strategy.cluster_resolver.task_id or 0)
  return 0


def is_multi_worker(strategy):
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
      num_workers(strategy) > 1


def is_chief(strategy):
  """True on the process that writes files (worker 0, or the `chief` task)."""
  if not is_multi_worker(strategy):
    return True
  resolver = strategy.cluster_resolver
  if resolver.task_type == "chief":
    return True
  spec = resolver.cluster_spec().as_dict()
  return "chief" not in spec and resolver.task_type == "worker" and resolver.task_id == 0


def is_tpu(strategy):
  return isinstance(strategy, (tf.distribute.TPUStrategy,))
