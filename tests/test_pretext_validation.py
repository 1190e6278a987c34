"""Held-out pretext evaluation during pretraining (`train.eval_every_epochs`): the model as it
stands after an epoch, on fixed clips of another split, beside the static guess on those clips."""

import csv
import math
import os

import numpy as np
import pytest

from pretrain_helpers import tiny_config


def _config(seed=0, every=1, epochs=2):
  c = tiny_config(seed=seed, epochs=epochs, steps_per_epoch=2, batch_size=2, verbose=0,
                  eval_every_epochs=every)
  c.data.eval_split = "test"
  return c


def _rows(workdir):
  with open(os.path.join(workdir, "log.csv")) as f:
    return list(csv.DictReader(f))


def _train(config, data_dir, workdir):
  from ctp_tf.training import pretrain
  return pretrain.train(config, data_dir=data_dir, workdir=str(workdir))


def test_held_out_iou_is_the_current_model_on_fixed_test_clips(tiny_data_dir, tmp_path):
  from ctp_tf.data.pretrain_input import pretrain_dataset
  from ctp_tf.training import export

  config = _config(seed=0, every=1, epochs=2)
  metrics = _train(config, tiny_data_dir, tmp_path / "a")
  rows = _rows(tmp_path / "a")
  assert [int(r["epoch"]) for r in rows] == [1, 2]
  for r in rows:
    assert 0.0 <= float(r["val_iou"]) <= 1.0 and 0.0 < float(r["val_iou_static"]) <= 1.0
  # The same clips every time: the static guess does not move between evaluations ...
  assert rows[0]["val_iou_static"] == rows[1]["val_iou_static"]
  # ... and is not the training batches' (a running mean over other clips).
  assert float(rows[1]["val_iou_static"]) != pytest.approx(float(rows[1]["iou_static"]),
                                                           abs=1e-6)
  # The last evaluation is the final weights scored on the test split, inference mode.
  model = export.load_ctp_workdir(str(tmp_path / "a"))[0]
  model.compile(optimizer="sgd")
  held_out = pretrain_dataset(tiny_data_dir, config, split="test", batch_size=2, seed=0,
                              repeat=False)
  res = model.evaluate(held_out, verbose=0, return_dict=True)
  assert float(rows[1]["val_iou"]) == pytest.approx(res["iou"], abs=1e-5)
  assert float(rows[1]["val_iou_static"]) == pytest.approx(res["iou_static"], abs=1e-6)
  assert metrics["val_iou"] == pytest.approx(res["iou"], abs=1e-5)

  # Another training seed is scored on the same clips: the static guess is identical.
  _train(_config(seed=1, every=1, epochs=1), tiny_data_dir, tmp_path / "b")
  assert _rows(tmp_path / "b")[0]["val_iou_static"] == rows[0]["val_iou_static"]


def test_evaluates_every_n_epochs_and_after_the_last(tiny_data_dir, tmp_path):
  _train(_config(every=2, epochs=3), tiny_data_dir, tmp_path / "w")
  rows = _rows(tmp_path / "w")
  done = [not math.isnan(float(r["val_iou"])) for r in rows]
  assert done == [False, True, True]


def test_missing_or_small_eval_split_is_refused_before_training(tiny_data_dir, tmp_path):
  from ctp_tf.training import pretrain

  def no_model(*args):
    raise AssertionError("the model was built although the input was bad")

  c = _config()
  c.data.eval_split = "validation"
  with pytest.raises(pretrain.PretrainError, match="eval_split='validation'"):
    pretrain.train(c, data_dir=tiny_data_dir, workdir=str(tmp_path / "x"), model_fn=no_model)
  c = _config()
  c.train.batch_size = 5      # the tiny test split holds 4 videos
  with pytest.raises(pretrain.PretrainError, match="fewer than one batch"):
    pretrain.train(c, data_dir=tiny_data_dir, workdir=str(tmp_path / "y"), model_fn=no_model)
  assert not os.path.exists(os.path.join(tmp_path, "x", "log.csv"))
