"""Action-recognition finetuning with `model.fit`: scratch or from an encoder export.

The model is the standard-stride backbone (stage 4 downsamples too) + `VideoClassifier`
(global average pool, dropout 0.5, one Dense initialised N(0, 0.001)). With `init_from` the
backbone weights come from the export's `encoder.weights.h5`, restored exactly.

`workdir` layout (the same as pretraining where it overlaps):
- `config.json`: the experiment config, classes and where the encoder came from.
- `backup/`: model + optimizer backups (`ctp_tf.training.callbacks.StepBackup`) at every epoch
  end (and every `train.backup_every_steps` steps if set); a killed run resumes from the newest.
- `checkpoints/epoch-XXXX.weights.h5`: per-epoch weights (the newest `keep_checkpoints` kept).
- `tb/`: TensorBoard scalars keyed by global step; `log.csv`: one row per epoch (appended
  across restarts).
- `history.json`: per-epoch `loss`, `acc`, `learning_rate`, and `val_top1`/`val_top5` (null on epochs
  without validation) - what `ctp_tf.curves` plots.
- `final.weights.h5`: the last epoch's model (the paper's result), read by `evaluate`.

Validation runs the 10-clip protocol on the test split every `config.train.eval_every_epochs`
epochs and after the last epoch (`TenClipValidation` callback).

Example:
```python
from ctp_tf.downstream import finetune
from ctp_tf.training import config_utils
finetune.finetune(config_utils.load_config_file("configs/finetune_ucf101.py"),
                  data_dir="data/ucf101_shards",
                  workdir="runs/ft_ctp", init_from="runs/pretrain/export")
```
"""

import json
import math
import os

import keras
import numpy as np

from ctp_tf import fileio
from ctp_tf.data import shards
# Re-exported: `finetune.load_finetuned`, `finetune.FINAL_WEIGHTS`, ... are its public names.
from ctp_tf.downstream.finetuned import (  # noqa: F401
    CONFIG, FINAL_WEIGHTS, HISTORY, MissingWorkdirFile, build_classifier, build_variables,
    load_finetuned, workdir_info)
from ctp_tf.errors import DataError, RunFailed


class TrainingDiverged(RunFailed, FloatingPointError):
  """The loss became non-finite or left train.max_loss; nothing final was written."""


class TenClipValidation(keras.callbacks.Callback):
  """Adds `val_top1`/`val_top5` (10-clip video accuracy) to the epoch logs.

  Runs every `every` epochs and after the last one; other epochs get NaN so that the CSV and
  history columns stay aligned (CSVLogger fixes its columns at the first epoch). Place it
  before the logging callbacks so they see the values.

  Args:
    make_dataset: () -> the eval dataset (`evaluate.eval_dataset_for`), rebuilt per use.
    every: validation period in epochs; epochs: total epochs of the run.
  """

  def __init__(self, make_dataset, *, every, epochs):
    super().__init__()
    self.make_dataset = make_dataset
    self.every = max(1, int(every))
    self.epochs = int(epochs)

  def on_epoch_end(self, epoch, logs=None):
    from ctp_tf.downstream import evaluate

    if logs is None:
      return
    done = epoch + 1
    if done % self.every == 0 or done == self.epochs:
      scores, labels, _ = evaluate.predict_videos(self.model, self.make_dataset())
      logs["val_top1"] = float(np.mean(evaluate.topk_correct(scores, labels, 1)))
      logs["val_top5"] = float(np.mean(evaluate.topk_correct(scores, labels, 5)))
      print(f"\nepoch {done}: 10-clip val_top1 {logs['val_top1']:.4f} "
            f"val_top5 {logs['val_top5']:.4f}", flush=True)
    else:
      logs["val_top1"] = float("nan")
      logs["val_top5"] = float("nan")


class HistoryJson(keras.callbacks.Callback):
  """Per-epoch logs in a JSON file kept across restarts (entries >= the epoch are replaced)."""

  def __init__(self, path):
    super().__init__()
    self.path = path

  def on_epoch_end(self, epoch, logs=None):
    entries = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        entries = [e for e in json.load(f)["epochs"] if e["epoch"] < epoch + 1]
    entry = {"epoch": epoch + 1}
    for k, v in (logs or {}).items():
      v = float(np.asarray(v))
      entry[k] = None if math.isnan(v) else v
    entries.append(entry)
    fileio.write_json_atomic(self.path, {"epochs": entries})


def _history_complete(workdir, epochs):
  path = os.path.join(workdir, HISTORY)
  if not (os.path.exists(path) and os.path.exists(os.path.join(workdir, FINAL_WEIGHTS))):
    return None
  with open(path) as f:
    entries = json.load(f)["epochs"]
  return entries if len(entries) >= epochs and entries[-1]["epoch"] == epochs else None


def finetune(config, *, data_dir, workdir, init_from=None, strategy="auto", tpu=None,
             verbose="auto", overwrite=False):  # "auto": config.train.verbose
  """Finetunes a classifier; resumes an interrupted run in the same workdir.

  Args:
    config: `ctp_tf.defaults.finetune_config()`-style ConfigDict (see `configs/finetune_*.py`).
    data_dir: converted shards with `train`/`test` splits (names in config.data).
    workdir: output directory (see the module docstring).
    init_from: an encoder export directory, or None to train from scratch.
    strategy, tpu: `ctp_tf.training.strategy.get_strategy` arguments.
    overwrite: clear `workdir` first (else a workdir of another model is refused).

  Returns:
    dict: final epoch's `loss`, `acc`, `val_top1`, `val_top5`, `epochs`, `history` path.

  Raises:
    UserError: bad config, data, export or workdir (one line each in scripts/finetune.py).
    RunFailed: the loss became non-finite or left `train.max_loss`.
  """
  import tensorflow as tf

  from ctp_tf.training import config_utils
  from ctp_tf.training import strategy as strategy_lib
  from ctp_tf.training import workdir as workdir_lib

  config_utils.validate(config)
  ds_meta = shards.load_dataset_json(data_dir)
  classes = list(ds_meta["classes"])
  train_split = config.data.train_split
  try:
    num_videos = int(ds_meta["splits"][train_split]["videos"])
  except (KeyError, TypeError, ValueError):
    raise DataError(f"{data_dir}/dataset.json has no split {train_split!r} "
                    f"(splits: {sorted(ds_meta.get('splits', {}))}).") from None
  if num_videos <= 0:
    raise DataError(f"split {train_split!r} in --data_dir={data_dir} has 0 videos (see "
                    "'failures' in its dataset.json); convert videos into it with "
                    "scripts/make_tfrecords.py.")
  strat = strategy if isinstance(strategy, tf.distribute.Strategy) else \
      strategy_lib.get_strategy(strategy, tpu)
  chief = strategy_lib.is_chief(strat)
  fields = workdir_lib.finetune_fields(config, classes)
  with workdir_lib.claim(workdir, "finetune", fields, overwrite=overwrite, chief=chief):
    return _finetune_locked(config, data_dir, workdir, init_from, strat, verbose, classes,
                            num_videos, workdir_lib.fingerprint(fields))


def make_optimizer(config, model, steps_per_epoch, global_batch):
  """The schedule of `config.optimizer`; `optimizer.backbone_lr_mult` (default 1: the
  reference) scales the encoder's learning rate against the head's."""
  from ctp_tf.training import optimizer as optimizer_lib
  mult = float(config.optimizer.get("backbone_lr_mult", 1.0))
  multipliers = ({v.path: mult for v in model.backbone.trainable_variables}
                 if mult != 1.0 else None)
  return optimizer_lib.make_optimizer(config.optimizer, steps_per_epoch, global_batch,
                                      lr_multipliers=multipliers)


def _finetune_locked(config, data_dir, workdir, init_from, strat, verbose, classes, num_videos,
                     config_fp):
  from ctp_tf.data import finetune_input, reader
  from ctp_tf.downstream import evaluate
  from ctp_tf.training import fit_loop
  from ctp_tf.training import strategy as strategy_lib

  epochs = int(config.train.epochs)
  train_split = config.data.train_split
  os.makedirs(workdir, exist_ok=True)
  done = _history_complete(workdir, epochs)
  if done is not None:
    print(f"{workdir}: finetuning already finished ({epochs} epochs); nothing to do.")
    return _summary(workdir, done)

  multi_worker = strategy_lib.is_multi_worker(strat)
  chief = strategy_lib.is_chief(strat)
  # More batch than videos still trains one step per epoch (pretraining refuses it).
  plan = fit_loop.plan_batches(config.train, strat.num_replicas_in_sync, num_videos,
                               at_least_one_step=True)
  global_batch, steps = plan.global_batch, plan.steps_per_epoch
  keras.utils.set_random_seed(int(config.train.seed))

  with strat.scope():
    model, export_cfg = build_classifier(config, len(classes), init_from=init_from,
                                         synchronized_bn=strat.num_replicas_in_sync > 1)
    build_variables(model, config)
    model.compile(
        optimizer=make_optimizer(config, model, steps, global_batch),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        jit_compile=bool(config.train.jit_compile),
        steps_per_execution=int(config.train.steps_per_execution))

  if chief:
    fileio.write_json_atomic(os.path.join(workdir, CONFIG), {
        "config": config.to_dict(), "num_classes": len(classes), "classes": classes,
        "init_from": os.path.abspath(init_from) if init_from else None,
        "export_config": export_cfg, "data_dir": os.path.abspath(data_dir),
        "global_batch": global_batch, "steps_per_epoch": steps,
        "strategy": type(strat).__name__, "replicas": strat.num_replicas_in_sync})
  model.optimizer.build(model.trainable_variables)

  # The resumable fit shared with pretraining (training/fit_loop.py): the newest complete
  # backup (weights, optimizer moments, step counter) of this workdir, then the rest of the
  # interrupted epoch, then whole epochs; one input pipeline per worker, each reading its own
  # share of the shards; the stream's seed depends on the step training (re)starts at.
  def stream(batch_size, seed, num_input_pipelines, input_pipeline_id):
    return finetune_input.finetune_dataset(
        data_dir, config.data, split=train_split, batch_size=batch_size, seed=seed,
        num_input_pipelines=num_input_pipelines, input_pipeline_id=input_pipeline_id,
        repeat=True)

  def on_resume(start, total, resumed):
    print(f"{workdir}: resuming at step {start} of {total} ({resumed['path']}).", flush=True)

  verbose = int(config.train.get("verbose", 1)) if verbose == "auto" else verbose
  result = fit_loop.run(
      model, strat, workdir=workdir, config_fp=config_fp, train=config.train, plan=plan,
      dataset_fn=stream, chief=chief, multi_worker=multi_worker, verbose=verbose,
      naming=reader.naming_bad_shards(data_dir, train_split, config.data.test_split),
      before_logging=[TenClipValidation(lambda: evaluate.eval_dataset_for(config, data_dir),
                                        every=int(config.train.get("eval_every_epochs", 10)),
                                        epochs=epochs)],
      chief_logging=[HistoryJson(os.path.join(workdir, HISTORY))], on_resume=on_resume)
  nan_guard = result.nan_guard
  if nan_guard.tripped:   # fit_loop set aside the backups written after the last good loss
    what = (f"loss above train.max_loss={nan_guard.max_loss:g}"
            if nan_guard.reason == "diverged" else "non-finite loss")
    raise TrainingDiverged(
        f"finetuning in {workdir!r} stopped at step {nan_guard.step}: {what}; nothing after "
        f"step {nan_guard.last_good_step} is kept for resuming. Lower optimizer.lr and re-run "
        "to resume from the last good backup.")
  if not chief:   # the chief writes the result; other workers have nothing more to do
    return {"epochs": epochs, "history": None, "weights": None}
  fileio.save_weights_atomic(model, os.path.join(workdir, FINAL_WEIGHTS))
  with open(os.path.join(workdir, HISTORY)) as f:
    entries = json.load(f)["epochs"]
  return _summary(workdir, entries)


def _summary(workdir, entries):
  last = entries[-1]
  out = {k: last.get(k) for k in ("loss", "acc", "val_top1", "val_top5")}
  out.update({"epochs": last["epoch"], "history": os.path.join(workdir, HISTORY),
              "weights": os.path.join(workdir, FINAL_WEIGHTS)})
  return out
