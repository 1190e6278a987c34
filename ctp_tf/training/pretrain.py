"""CtP pretraining: `model.fit` of the CtP model on the synthesis pipeline under tf.distribute.

`train(config, data_dir=..., workdir=...)` is the whole job; `scripts/pretrain.py` is flags
around it. What it writes in `workdir`:

  config.json      the resolved config plus the run's derived numbers (global batch, scaled lr,
                   steps per epoch, strategy, replicas)
  backup/          `ckpt-<step>.weights.h5` + `.json` (model + optimizer), every
                   `train.backup_every_steps` steps and at each epoch end; the newest 2 kept
  checkpoints/     `epoch-<e>.weights.h5`, the last `train.keep_checkpoints`
  tb/              TensorBoard: scalars by global step, box images
  log.csv          one row per epoch (appended across restarts)
  metrics.json     final metrics and the run's status
  export/          the encoder (`ctp_tf.training.export.export_encoder`)

Resuming. Re-running the same command loads the newest backup (weights, optimizer moments,
step counter, so the LR schedule continues) and trains from that step: first the rest of the
interrupted epoch, then the remaining epochs. The input stream is an endless, seeded shuffle;
its seed is derived from `(train.seed, the global step training (re)starts at, the worker)`.
So a run restarted at step s always sees the same data as any other restart at s (resumed
runs are reproducible), without paying to replay the decoded stream up to s; an
uninterrupted run and a resumed one see different, equally distributed samples after s.
"""

import contextlib
import json
import os
import time

import numpy as np
from absl import logging

from ctp_tf import fileio
from ctp_tf.errors import UserError
from ctp_tf.training import callbacks as cbs
from ctp_tf.training import checkpoint as ckpt
from ctp_tf.training import config_utils
from ctp_tf.training import export as export_lib
from ctp_tf.training import fit_loop
from ctp_tf.training import optimizer as optim
from ctp_tf.training import pretext_validation
from ctp_tf.training import strategy as strat
from ctp_tf.training import workdir as workdir_lib

MIXED_PRECISION = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


class PretrainError(UserError, ValueError):
  """Bad input found before the model is built (data dir, batch, config)."""


def _count_videos(data_dir, split):
  """Checks `data_dir` holds `split` shards; returns the number of videos (dataset.json)."""
  import tensorflow as tf
  if not data_dir:
    raise PretrainError("No --data_dir given.")
  if not tf.io.gfile.isdir(data_dir):
    raise PretrainError(f"--data_dir={data_dir} does not exist or is not a directory.")
  from ctp_tf.data import shards  # noqa: PLC0415
  pattern = shards.shard_pattern(data_dir, split)
  if not tf.io.gfile.glob(pattern):
    raise PretrainError(
        f"--data_dir={data_dir} has no '{split}' shards (looked for {pattern}). Convert videos "
        "first: scripts/make_tfrecords.py --dataset=... --video_dir=... --out_dir=DATA_DIR")
  meta_path = os.path.join(data_dir, "dataset.json")
  if not tf.io.gfile.exists(meta_path):
    raise PretrainError(f"--data_dir={data_dir} has shards but no dataset.json ({meta_path}); "
                        "it is written by scripts/make_tfrecords.py.")
  meta = shards.load_dataset_json(data_dir)
  try:
    count = int(meta["splits"][split]["videos"])
  except (KeyError, TypeError, ValueError):
    raise PretrainError(f"{meta_path} lists no video count for split {split!r}.") from None
  if count <= 0:
    # A repeating stream over no video would spin forever: stop here instead.
    raise PretrainError(
        f"split {split!r} in --data_dir={data_dir} has 0 videos (see 'failures' in "
        f"{meta_path}); convert videos into it with scripts/make_tfrecords.py.")
  return count


def plan_batches(config, num_replicas, num_videos):
  """Returns (per_replica_batch, global_batch, steps_per_epoch) or raises PretrainError."""
  plan = fit_loop.plan_batches(config.train, num_replicas, num_videos, error=PretrainError)
  return plan.per_replica, plan.global_batch, plan.steps_per_epoch


def _mixed_precision_policy(setting, strategy):
  """train.precision / train.mixed_precision: False or "float32", True or "auto" (float16 on
  GPU, bfloat16 on TPU/CPU), "float16", "bfloat16"."""
  if not setting or setting == "float32":
    return None
  if setting is True or setting == "auto":
    import tensorflow as tf
    if strat.is_tpu(strategy) or not tf.config.list_logical_devices("GPU"):
      return "mixed_bfloat16"
    return "mixed_float16"
  if setting in MIXED_PRECISION:
    return MIXED_PRECISION[setting]
  if setting in MIXED_PRECISION.values():
    return setting
  raise PretrainError(f"train.precision={setting!r}: use 'float32', 'auto', 'float16' or "
                      "'bfloat16'.")


def _check_eval_split(config, data_dir, global_batch, multi_worker):
  """`train.eval_every_epochs` needs a split of at least one global batch, on one worker."""
  split = config.data.get("eval_split", "test")
  if multi_worker:
    raise PretrainError("--config.train.eval_every_epochs: held-out pretext evaluation runs on "
                        "one worker; set it to 0 for multi-worker training.")
  if not data_dir:
    raise PretrainError("--config.train.eval_every_epochs needs --data_dir (it reads "
                        f"--config.data.eval_split={split!r} from there).")
  try:
    count = _count_videos(data_dir, split)
  except PretrainError as e:
    raise PretrainError(f"--config.data.eval_split={split!r}: {e}") from None
  if count < global_batch:
    raise PretrainError(f"--config.data.eval_split={split!r} has {count} videos, fewer than one "
                        f"batch ({global_batch}); held-out evaluation needs at least one batch.")


def _check_input_placement(config):
  """config.synthesis.placement and config.data.service_address, checked (a reachable
  dispatcher), so a typo is one line and not a hang inside tf.data."""
  import socket
  from ctp_tf.data import pretrain_input
  try:
    pretrain_input.placement(config)
    address = config.data.get("service_address", "") or ""
    if not address:
      return
    target = pretrain_input.service_target(address)
  except ValueError as e:
    raise PretrainError(str(e)) from None
  host, port = target[len("grpc://"):].rsplit(":", 1)
  try:
    socket.create_connection((host, int(port)), timeout=10).close()
  except OSError as e:
    raise PretrainError(f"cannot reach the tf.data service dispatcher at {target} ({e}); start "
                        "it with scripts/data_service.py --mode=dispatcher") from None


def default_model_fn(config, clip_shape, num_boxes, synchronized_bn):
  from ctp_tf.models import build_ctp_model
  return build_ctp_model(config.model, clip_shape=clip_shape, num_boxes=num_boxes,
                         synchronized_bn=synchronized_bn)


def default_dataset_fn(data_dir, config, *, batch_size, seed, num_input_pipelines,
                       input_pipeline_id):
  from ctp_tf.data.pretrain_input import pretrain_dataset
  return pretrain_dataset(data_dir, config, split=config.data.split, batch_size=batch_size,
                          seed=seed, num_input_pipelines=num_input_pipelines,
                          input_pipeline_id=input_pipeline_id, repeat=True)


def _dummy_batch(clip_shape, num_boxes):
  t, h, w = clip_shape
  boxes = np.tile(np.array([0, 0, min(8, w - 1), min(8, h - 1)], np.float32),
                  (1, num_boxes, t, 1))
  return {"clip": np.zeros((1, t, h, w, 3), np.uint8), "boxes": boxes,
          "weights": np.ones((1, num_boxes, t), np.float32)}


def _sample_batch(dataset_fn, data_dir, config, seed):
  """A fixed batch of 3 synthesised clips for the TensorBoard box images."""
  ds = dataset_fn(data_dir, config, batch_size=3, seed=seed + 12345, num_input_pipelines=1,
                  input_pipeline_id=0)
  from ctp_tf.data.pretrain_input import finish_batch
  return finish_batch(next(iter(ds)))   # accelerator placement: finished on the host


def train(config, *, data_dir, workdir, strategy="auto", tpu=None, model_fn=None,
          dataset_fn=None, callbacks=(), overwrite=False):
  """Pretrains CtP with `model.fit`; returns the final metrics dict (also metrics.json).

  Args:
    config: pretraining ConfigDict (`configs/*.py`, `ctp_tf.defaults.pretrain_config()`).
    data_dir: converted shards (`scripts/make_tfrecords.py`).
    workdir: where everything is written (see the module doc); re-running resumes.
    strategy: `auto|default|mirrored|multi_worker|tpu` or a `tf.distribute.Strategy`.
    tpu: TPU address for `strategy="tpu"`.
    model_fn: `(config, clip_shape, num_boxes, synchronized_bn) -> keras.Model` with a
      `compute_loss` override; default `build_ctp_model`. For tests and experiments.
    dataset_fn: `(data_dir, config, *, batch_size, seed, num_input_pipelines,
      input_pipeline_id) -> tf.data.Dataset` of endless batch dicts; default `pretrain_dataset`.
    callbacks: extra Keras callbacks, run after ours.
    overwrite: clear `workdir` first (else a workdir of another model is refused).

  Returns:
    dict with the last epoch's metrics (`loss`, `loss_ctr`, `loss_size`, `iou`,
    `iou_static`, ...), `global_step`, `status` (`completed` | `nan_loss` | `diverged` |
    `stopped`) and the paths written.

  Raises:
    UserError (PretrainError, WorkdirError, ConfigValueError, DataError, StrategyError):
      bad input, found before training (a damaged shard: when it is read).
  """
  import keras
  import tensorflow as tf

  t0 = time.time()
  model_fn = model_fn or default_model_fn
  custom_data = dataset_fn is not None
  dataset_fn = dataset_fn or default_dataset_fn

  # -- Everything that can be wrong with the input, checked before any model is built. --
  config_utils.validate(config)
  s = strategy if isinstance(strategy, tf.distribute.Strategy) else \
      strat.get_strategy(strategy, tpu)
  replicas = s.num_replicas_in_sync
  workers, worker_id = strat.num_workers(s), strat.worker_index(s)
  chief = strat.is_chief(s)
  multi_worker = strat.is_multi_worker(s)
  split = config.data.split
  num_videos = None if (custom_data and not data_dir) else _count_videos(data_dir, split)
  if num_videos is None and not config.train.steps_per_epoch:
    raise PretrainError("A custom dataset_fn without data_dir needs train.steps_per_epoch.")
  _check_input_placement(config)
  per_replica, global_batch, steps_per_epoch = plan_batches(config, replicas, num_videos or 0)
  eval_every = int(config.train.get("eval_every_epochs", 0) or 0)
  if eval_every:
    _check_eval_split(config, data_dir, global_batch, multi_worker)
  policy = _mixed_precision_policy(
      config.train.get("precision", "") or config.train.mixed_precision, s)
  if policy == "mixed_float16" and not tf.config.list_logical_devices("GPU"):
    raise PretrainError("train.precision='float16' needs a GPU; use 'bfloat16' on CPU/TPU.")

  epochs = int(config.train.epochs)
  total_steps = epochs * steps_per_epoch
  clip_len, crop = int(config.data.clip_len), int(config.data.crop_size)
  clip_shape = (clip_len, crop, crop)
  num_boxes = int(config.synthesis.num_trajectories)
  paths = fit_loop.workdir_paths(workdir)
  # The lock, kind and model fingerprint of the workdir (refused at once when they do not fit).
  config_fp = workdir_lib.fingerprint(workdir_lib.pretrain_fields(config))
  stack = contextlib.ExitStack()
  stack.enter_context(workdir_lib.claim(workdir, "pretrain", workdir_lib.pretrain_fields(config),
                                        overwrite=overwrite, chief=chief))
  os.makedirs(workdir, exist_ok=True)
  run_info = {
      "strategy": type(s).__name__, "replicas": replicas, "workers": workers,
      "per_replica_batch": per_replica, "global_batch": global_batch,
      "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
      "learning_rate": optim.scaled_learning_rate(config.optimizer, global_batch),
      "mixed_precision": policy or "float32", "data_dir": data_dir, "num_videos": num_videos,
      "keras": keras.__version__, "tensorflow": tf.__version__}
  previous_policy = keras.config.dtype_policy()
  try:
    if chief:
      fileio.write_json_atomic(paths["config"], {"config": config.to_dict(), "run": run_info})
    logging.info("Pretraining: %s", json.dumps(run_info))
    if policy:
      keras.config.set_dtype_policy(policy)
    # -- Model, optimizer. --
    # Same seed, same initial weights (and identical on every worker and replica).
    keras.utils.set_random_seed(int(config.train.seed))
    with s.scope():
      model = model_fn(config, clip_shape, num_boxes, replicas > 1)
      model(_dummy_batch(clip_shape, num_boxes), training=False)   # build every variable
      opt = optim.make_optimizer(config.optimizer, steps_per_epoch, global_batch)
      model.compile(optimizer=opt, jit_compile=bool(config.train.jit_compile),
                    steps_per_execution=int(config.train.steps_per_execution or 1))
      model.optimizer.build(model.trainable_variables)

    # -- Restore, callbacks, the resumable fit (training/fit_loop.py). --
    def stream(batch_size, seed, num_input_pipelines, input_pipeline_id):
      return dataset_fn(data_dir, config, batch_size=batch_size, seed=seed,
                        num_input_pipelines=num_input_pipelines,
                        input_pipeline_id=input_pipeline_id)

    def on_resume(start, total, _):
      logging.info("Resuming at step %d of %d (epoch %d).", start, total,
                   start // steps_per_epoch)

    chief_logging = []
    if chief and config.train.log_images and hasattr(model, "decode") and not multi_worker:
      chief_logging.append(cbs.BoxImages(
          paths["tb"], _sample_batch(dataset_fn, data_dir, config, int(config.train.seed)),
          config.train.image_every_epochs))
    # A damaged shard surfaces as TF's DataLossError without a file name: name the file.
    from ctp_tf.data import reader  # noqa: PLC0415
    naming = reader.naming_bad_shards(data_dir, split) if data_dir else contextlib.nullcontext()
    before_logging = []
    if eval_every:
      before_logging.append(pretext_validation.PretextValidation(
          lambda: pretext_validation.eval_dataset(data_dir, config, global_batch),
          every=eval_every, epochs=epochs))
    result = fit_loop.run(
        model, s, workdir=workdir, config_fp=config_fp, train=config.train,
        before_logging=before_logging,
        plan=fit_loop.BatchPlan(per_replica, global_batch, steps_per_epoch), dataset_fn=stream,
        chief=chief, multi_worker=multi_worker,
        verbose=int(config.train.get("verbose", 1)), naming=naming,
        chief_logging=chief_logging, extra_callbacks=callbacks, on_resume=on_resume)
    start, step, nan_guard = result.start, result.step, result.nan_guard

    last_logs = result.last_logs
    if not last_logs and start >= total_steps and os.path.exists(paths["metrics"]):
      # Re-running a finished command: nothing to train; keep the metrics it ended with.
      with open(paths["metrics"]) as f:
        last_logs = {k: v for k, v in json.load(f).items() if isinstance(v, float)}

    metrics = dict(last_logs)
    metrics.update({"global_step": step, "total_steps": total_steps,
                    "epochs_done": step / steps_per_epoch, "resumed_from_step": start,
                    "wall_seconds": time.time() - t0})
    if nan_guard.tripped:
      good = ckpt.list_backups(paths["backup"])
      good_ckpt = ckpt.latest_checkpoint(paths["checkpoints"])
      diverged = nan_guard.reason == "diverged"
      metrics["status"] = "diverged" if diverged else "nan_loss"
      metrics["nan_step"] = nan_guard.step
      metrics["last_good_step"] = nan_guard.last_good_step
      metrics["last_good_backup"] = good[0]["weights"] if good else None
      metrics["last_good_checkpoint"] = good_ckpt
      what = (f"Loss left its bound (train.max_loss={nan_guard.max_loss:g})" if diverged
              else "Loss became NaN/inf")
      metrics["message"] = (
          f"{what} at step {nan_guard.step}; training stopped and nothing was exported. The "
          f"last good state is {metrics['last_good_backup'] or 'none (no backup yet)'}"
          f"{' and checkpoint ' + good_ckpt if good_ckpt else ''}; "
          "nothing after it is resumed. Lower optimizer.lr or check the data, then re-run to "
          "resume from it.")
      logging.error(metrics["message"])
    elif step >= total_steps:
      metrics["status"] = "completed"
      if chief:
        metrics["export"] = paths["export"]
        export_lib.export_encoder(model, paths["export"], config=config, clip_shape=clip_shape)
        metrics["export_kind"] = "export_encoder"
    else:
      metrics["status"] = "stopped"
    if chief:
      fileio.write_json_atomic(paths["metrics"], metrics)
    return metrics
  finally:
    keras.config.set_dtype_policy(previous_policy)
    stack.close()
