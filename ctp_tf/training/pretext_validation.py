"""The pretext measured on held-out videos: IoU of the model's tracks and of the static guess.

The training logs' `iou` is a running mean over an epoch's batches while the weights change,
on the videos being trained on. This callback evaluates the model as it stands after an epoch
(BatchNorm in inference mode) on one fixed set of clips made from another split (by default
`test`), with trajectories drawn from `train.eval_seed`, so every evaluation and every training
seed sees the same clips and the static guess (frame 0's box kept for every frame) is scored
on exactly the clips the model is.
"""

import math
import warnings

import keras

EVAL_KEYS = ("val_iou", "val_iou_static", "val_loss")


class PretextValidation(keras.callbacks.Callback):
  """Adds `val_iou`, `val_iou_static` and `val_loss` to the epoch logs.

  Runs after every `every`-th epoch and after the last; other epochs get NaN so that the CSV
  columns stay fixed. Place it before the logging callbacks so they see the values.

  Args:
    make_dataset: () -> a finite dataset of pretraining batches (rebuilt per use, so every
      evaluation sees the same clips).
    every: period in epochs; epochs: total epochs of the run.
  """

  def __init__(self, make_dataset, *, every, epochs):
    super().__init__()
    self.make_dataset = make_dataset
    self.every = max(1, int(every))
    self.epochs = int(epochs)

  def due(self, done):
    return done % self.every == 0 or done == self.epochs

  def on_epoch_end(self, epoch, logs=None):
    if logs is None:
      return
    if not self.due(epoch + 1):
      logs.update({k: math.nan for k in EVAL_KEYS})
      return
    # Keras' own validation does the same at epoch end: the train metrics are already in
    # `logs`, and fit resets the trackers when the next epoch begins.
    with warnings.catch_warnings():
      # A finite dataset of unknown length makes Keras warn that the input "ran out of data"
      # when the pass ends: that end is the point here.
      warnings.filterwarnings("ignore", message="Your input ran out of data")
      res = self.model.evaluate(self.make_dataset(), verbose=0, return_dict=True)
    logs.update({"val_iou": float(res["iou"]), "val_iou_static": float(res["iou_static"]),
                 "val_loss": float(res["loss"])})
    print(f"\nepoch {epoch + 1}: held-out pretext IoU {logs['val_iou']:.4f} "
          f"(static guess {logs['val_iou_static']:.4f})", flush=True)


def eval_dataset(data_dir, config, global_batch):
  """One pass over `config.data.eval_split` (at most `train.eval_max_videos` videos, 0: all) as
  pretraining batches whose clips and trajectories depend on `train.eval_seed` only."""
  from ctp_tf.data.pretrain_input import pretrain_dataset
  ds = pretrain_dataset(data_dir, config, split=config.data.eval_split,
                        batch_size=global_batch, seed=int(config.train.eval_seed), repeat=False)
  cap = int(config.train.get("eval_max_videos", 0) or 0)
  return ds.take(max(1, cap // global_batch)) if cap else ds
