"""The one resumable `model.fit` loop that pretraining and finetuning both configure.

A trainer (`training/pretrain.py:train`, `downstream/finetune.py:finetune`) checks its input,
builds and compiles its model under the strategy's scope, writes its `config.json`, and then
hands the rest to `run`:

  1. the workdir's stale temporaries are removed (chief only);
  2. the newest complete backup or checkpoint (weights, optimizer moments and step counter
     together, fingerprinted) is restored; a backup of another model is a `WorkdirError`;
  3. the standard callbacks are built (`NanGuard`, `StepLogs`, `StepBackup`, `Checkpoints`,
     and on the chief `CSVLog` + `ScalarSummaries`), with the trainer's own callbacks slotted
     in where their logs must be seen;
  4. `model.fit` runs from the restored step: the rest of an interrupted epoch, then whole
     epochs; the input stream's seed is `seeds.stream_seed(seed, start step, pipeline)`;
  5. a NaN / out-of-bound loss stops the loop and the backups written after the last good step
     are set aside, so that a rerun resumes before the divergence.

What the result means (completed, exported, raised) stays the trainer's business.

Example (a trainer's core, after its model is compiled):
```python
result = fit_loop.run(model, strategy, workdir=workdir, config_fp=fp, train=config.train,
                      plan=fit_loop.BatchPlan(per_replica, global_batch, steps),
                      dataset_fn=lambda batch_size, seed, n, i: my_dataset(...))
if result.nan_guard.tripped: ...
```
"""

import contextlib
import dataclasses
import os

from absl import logging

from ctp_tf import fileio
from ctp_tf.errors import UserError, WorkdirError
from ctp_tf.seeds import stream_seed
from ctp_tf.training import callbacks as cbs
from ctp_tf.training import checkpoint as ckpt


class BatchPlanError(UserError, ValueError):
  """A batch size, step count or epoch count that cannot be trained."""


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  per_replica: int
  global_batch: int
  steps_per_epoch: int


def plan_batches(train, num_replicas, num_videos, *, error=BatchPlanError,
                 at_least_one_step=False):
  """Per-replica batch, global batch and steps per epoch from `config.train`.

  `train.global_batch_size` (if set) wins over `train.batch_size` (per replica);
  `train.steps_per_epoch` (if set) over `num_videos // global_batch`. With more batch than
  videos: `error` is raised, or one step per epoch with `at_least_one_step`.
  """
  if train.get("global_batch_size", 0):
    gb = int(train.global_batch_size)
    if gb <= 0 or gb % num_replicas:
      raise error(
          f"train.global_batch_size={gb} does not divide over the {num_replicas} replicas; use a "
          f"multiple of {num_replicas} (or set train.batch_size per replica).")
    per_replica = gb // num_replicas
  else:
    per_replica = int(train.batch_size)
    if per_replica <= 0:
      raise error(f"train.batch_size={train.batch_size} must be a positive per-replica batch.")
  global_batch = per_replica * num_replicas
  if train.get("steps_per_epoch", 0):
    steps = int(train.steps_per_epoch)
  else:
    steps = num_videos // global_batch
    if steps == 0 and at_least_one_step:
      steps = 1
    elif steps == 0:
      raise error(
          f"The global batch {global_batch} (= {per_replica} per replica x {num_replicas} "
          f"replicas) is larger than the {num_videos} training videos; lower train.batch_size "
          "or set train.steps_per_epoch.")
  if int(train.epochs) <= 0:
    raise error(f"train.epochs={train.epochs} must be positive.")
  spe = int(train.get("steps_per_execution", 1) or 1)
  if spe < 1:
    raise error(f"train.steps_per_execution={spe} must be >= 1.")
  return BatchPlan(per_replica, global_batch, steps)


def workdir_paths(workdir):
  """The files and folders the loop (and the trainers) write in `workdir`."""
  return {k: os.path.join(workdir, v) for k, v in {
      "backup": "backup", "checkpoints": "checkpoints", "tb": "tb", "csv": "log.csv",
      "config": "config.json", "metrics": "metrics.json", "export": "export"}.items()}


@dataclasses.dataclass
class FitResult:
  start: int           # the global step training (re)started at
  step: int            # the global step it ended at
  total_steps: int
  resumed: object      # restore_latest's dict, or None for a fresh start
  last_logs: dict      # the last epoch's logs ({} when nothing was trained)
  nan_guard: object    # cbs.NanGuard: .tripped, .reason, .step, .last_good_step
  paths: dict


def restore(model, paths, fingerprint, chief, workdir):
  """Newest readable backup or checkpoint (weights, optimizer, step together) or None."""
  try:
    return ckpt.restore_latest(model, paths["backup"], paths["checkpoints"],
                               fingerprint=fingerprint, set_aside_bad=chief)
  except ckpt.StateMismatchError as e:
    raise WorkdirError(f"--workdir={workdir}: {e}. Start afresh with a new --workdir, or pass "
                       "--overwrite to clear this one.") from None


def run(model, strategy, *, workdir, config_fp, train, plan, dataset_fn, chief=True,
        multi_worker=False, verbose=1, naming=None, before_logging=(), chief_logging=(),
        extra_callbacks=(), on_resume=None):
  """Restores, trains to `train.epochs` and stops on NaN/divergence. Returns a FitResult.

  Args:
    model: compiled under `strategy.scope()`, optimizer built.
    strategy: the tf.distribute.Strategy.
    workdir, config_fp: where backups/checkpoints/logs go; the config's fingerprint (a backup
      of another fingerprint is refused).
    train: `config.train` (seed, epochs, max_loss, backup/checkpoint/log periods).
    plan: BatchPlan.
    dataset_fn: `(batch_size, seed, num_input_pipelines, input_pipeline_id) -> tf.data` of
      endless per-replica batches.
    before_logging: callbacks placed after NanGuard and before the logging callbacks (they add
      logs that CSV/TensorBoard must see, e.g. validation).
    chief_logging: chief-only callbacks after the standard logging ones.
    extra_callbacks: run last (all workers).
    naming: a context manager around each fit (e.g. naming damaged shards) or None.
    on_resume: `(start_step, total_steps, resumed)` called when a backup was restored.
  """
  paths = workdir_paths(workdir)
  steps = plan.steps_per_epoch
  epochs = int(train.epochs)
  total_steps = epochs * steps
  if chief:
    fileio.remove_stale_temporaries([paths["backup"], paths["checkpoints"], workdir])
  if multi_worker:
    cbs.patch_for_multi_worker(model)
  fingerprint = ckpt.state_fingerprint(model, config_fp)
  resumed = restore(model, paths, fingerprint, chief, workdir)
  start = ckpt.global_step(model)
  if resumed and on_resume is not None:
    on_resume(start, total_steps, resumed)

  def distributed(start_step):
    def fn(ctx):
      return dataset_fn(ctx.get_per_replica_batch_size(plan.global_batch),
                        stream_seed(train.seed, start_step, ctx.input_pipeline_id),
                        ctx.num_input_pipelines, ctx.input_pipeline_id)
    return strategy.distribute_datasets_from_function(fn)

  nan_guard = cbs.NanGuard(max_loss=train.get("max_loss", None))
  callbacks = [nan_guard, *before_logging, cbs.StepLogs(),
               ckpt.StepBackup(paths["backup"], int(train.get("backup_every_steps", 0) or 0),
                               steps, nan_guard=nan_guard, is_chief=chief,
                               fingerprint=fingerprint),
               ckpt.Checkpoints(paths["checkpoints"],
                                int(train.get("checkpoint_every_epochs", 1)),
                                int(train.get("keep_checkpoints", 3)), nan_guard=nan_guard,
                                is_chief=chief, fingerprint=fingerprint)]
  if chief:
    callbacks += [cbs.CSVLog(paths["csv"]),
                  cbs.ScalarSummaries(paths["tb"], int(train.get("log_every_steps", 10))),
                  *chief_logging]
  callbacks += list(extra_callbacks)
  verbose = verbose if chief else 0

  last_logs = {}
  step = start
  naming = naming if naming is not None else contextlib.nullcontext()
  while step < total_steps and not model.stop_training:
    epoch, in_epoch = divmod(step, steps)
    with naming:
      if in_epoch:   # the rest of an interrupted epoch, then whole epochs
        hist = model.fit(distributed(step), epochs=epoch + 1, initial_epoch=epoch,
                         steps_per_epoch=steps - in_epoch, callbacks=callbacks, verbose=verbose)
      else:
        hist = model.fit(distributed(step), epochs=epochs, initial_epoch=epoch,
                         steps_per_epoch=steps, callbacks=callbacks, verbose=verbose)
    if hist.history:
      last_logs = {k: float(v[-1]) for k, v in hist.history.items()}
    new_step = ckpt.global_step(model)
    if new_step == step or nan_guard.tripped:
      break
    step = new_step
  step = ckpt.global_step(model)
  if nan_guard.tripped and chief:
    # Backups after the last step whose weights gave an in-bound loss already carry the
    # divergence: set them aside so that a rerun (with a lower lr) resumes before it.
    moved = ckpt.set_aside_after(nan_guard.last_good_step, paths["backup"],
                                 paths["checkpoints"])
    if moved:
      logging.warning("Set aside %d backup(s) written after step %d: %s", len(moved),
                      nan_guard.last_good_step, moved)
  return FitResult(start=start, step=step, total_steps=total_steps, resumed=resumed,
                   last_logs=last_logs, nan_guard=nan_guard, paths=paths)
