"""Pretraining end to end: the script on the demo config at toy size, kill -9 and resume,
NaN handling, XLA compilation, and bad input rejected before any model is built."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

from pretrain_helpers import (REPO, assert_state_equals_backup, synthetic_dataset_fn, tiny_config,
                              visible_boxes_dataset_fn)

WORKER = os.path.join(REPO, "tests", "pretrain_worker.py")
SCRIPT = os.path.join(REPO, "scripts", "pretrain.py")


def _env(**extra):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def _no_model(*args):
  raise AssertionError("the model was built although the input was bad")


def _assert_workdir_intact(workdir):
  """Every JSON parses, every .h5 opens, no temporary file is left behind."""
  files = [f for f in glob.glob(os.path.join(workdir, "**", "*"), recursive=True)
           if os.path.isfile(f)]
  assert not [f for f in files if ".tmp-" in os.path.basename(f)], files
  for f in files:
    if f.endswith(".json"):
      with open(f) as fh:
        json.load(fh)
    elif f.endswith(".h5"):
      with h5py.File(f, "r") as fh:
        assert len(fh.keys()) > 0


def test_demo_config_end_to_end_via_script(tiny_data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  args = [sys.executable, SCRIPT, f"--data_dir={tiny_data_dir}", f"--workdir={workdir}",
          "--config.model.width_multiplier=0.125", "--config.model.hidden=16",
          "--config.data.clip_len=8", "--config.data.crop_size=32",
          "--config.data.short_sides=(32,36)", "--config.synthesis.scales=(6,8,10)",
          "--config.synthesis.num_trajectories=2", "--config.train.batch_size=2",
          "--config.train.epochs=2", "--config.train.steps_per_epoch=2",
          "--config.train.verbose=0", "--config.data.shuffle_buffer=4"]
  proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=_env())
  assert proc.returncode == 0, proc.stderr[-4000:]
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  assert metrics["status"] == "completed" and metrics["global_step"] == 4
  for k in ("loss", "loss_ctr", "loss_size", "iou", "iou_static"):
    assert np.isfinite(metrics[k]), k
  assert 0.0 <= metrics["iou"] <= 1.0 and 0.0 < metrics["iou_static"] <= 1.0
  run = json.load(open(os.path.join(workdir, "config.json")))
  assert run["config"]["model"]["arch"] == "r3d_10"   # the demo config was the default
  assert run["config"]["data"]["crop_size"] == 32      # and the overrides were applied
  assert os.listdir(os.path.join(workdir, "export"))
  assert glob.glob(os.path.join(workdir, "tb", "train", "events.*"))
  assert glob.glob(os.path.join(workdir, "tb", "images", "events.*"))
  rows = [r for r in open(os.path.join(workdir, "log.csv")).read().splitlines() if r]
  assert rows[0].startswith("epoch,") and len(rows) == 3
  _assert_workdir_intact(workdir)


def test_sigkill_mid_epoch_then_resume(tmp_path):
  workdir = str(tmp_path / "run")
  spec = dict(workdir=workdir, strategy="default", data="synthetic",
              result=str(tmp_path / "m.json"),
              overrides={"train.epochs": 2, "train.steps_per_epoch": 4,
                         "train.backup_every_steps": 2})
  killed = subprocess.run([sys.executable, WORKER, json.dumps(dict(spec, kill_at_step=7))],
                          capture_output=True, text=True, timeout=300, env=_env())
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  backups = sorted(glob.glob(os.path.join(workdir, "backup", "ckpt-*.json")))
  last = json.load(open(backups[-1]))
  assert last["global_step"] == 6 and last["epoch"] == 1 and last["step_in_epoch"] == 2
  _assert_workdir_intact(workdir)
  backup = str(tmp_path / "last_backup.weights.h5")   # the resumed run rotates the backups
  shutil.copy(backups[-1][:-len(".json")] + ".weights.h5", backup)

  state = str(tmp_path / "state_at_resume.npz")
  done = subprocess.run([sys.executable, WORKER, json.dumps(dict(spec, state_at_start=state))],
                        capture_output=True, text=True, timeout=300, env=_env())
  assert done.returncode == 0, done.stderr[-3000:]
  # What training resumed with is what the backup holds: weights, momentum slots and step.
  with np.load(state) as z:
    weights = [z[f"m{i}"] for i in range(sum(k.startswith("m") for k in z.files))]
    opt_vars = [z[f"o{i}"] for i in range(sum(k.startswith("o") for k in z.files))]
  assert_state_equals_backup(weights, opt_vars, backup, step=6)
  m = json.load(open(tmp_path / "m.json"))
  assert m["resumed_from_step"] == 6          # past the last backed-up step, not epoch 0
  assert m["global_step"] == m["total_steps"] == 8 and m["status"] == "completed"
  rows = open(os.path.join(workdir, "log.csv")).read().splitlines()
  epochs = [int(r.split(",")[0]) for r in rows if r and not r.startswith("epoch")]
  assert epochs == [1, 2]                     # epoch 1 from the first run, 2 from the second
  _assert_workdir_intact(workdir)


def test_nan_loss_stops_and_keeps_last_good_state(tmp_path):
  from ctp_tf.training import pretrain
  from ctp_tf.training import checkpoint as ckpt
  config = tiny_config(epochs=3, steps_per_epoch=3, backup_every_steps=1)
  config.optimizer.lr = 1e36
  config.optimizer.clip_norm = 0.0
  workdir = str(tmp_path / "run")
  m = pretrain.train(config, data_dir=None, workdir=workdir, strategy="default",
                     dataset_fn=synthetic_dataset_fn)
  assert m["status"] == "nan_loss" and m["global_step"] < m["total_steps"]
  assert "NaN" in m["message"] and json.load(open(os.path.join(workdir, "metrics.json")))[
      "status"] == "nan_loss"
  assert not os.path.exists(os.path.join(workdir, "export"))
  for b in ckpt.list_backups(os.path.join(workdir, "backup")):
    with h5py.File(b["weights"], "r") as f:
      arrays = []
      f.visititems(lambda n, o: arrays.append(o[()]) if isinstance(o, h5py.Dataset) else None)
    assert arrays and all(np.isfinite(a).all() for a in arrays), b["weights"]
  if m["last_good_backup"]:
    assert m["last_good_backup"] in m["message"]


def test_train_step_compiles_with_xla(tmp_path):
  from ctp_tf.training import pretrain
  config = tiny_config(epochs=1, steps_per_epoch=2, jit_compile=True)
  m = pretrain.train(config, data_dir=None, workdir=str(tmp_path / "xla"), strategy="default",
                     dataset_fn=synthetic_dataset_fn)
  assert m["status"] == "completed" and np.isfinite(m["loss"])


def test_ctp_learns_to_track_visible_boxes(tmp_path):
  """Through the real training loop, on fresh batches each step (no memorising): the decoded
  boxes beat the static guess within 80 SGD steps when the trajectories are plainly visible."""
  from ctp_tf.training import pretrain
  config = tiny_config(epochs=4, steps_per_epoch=20, batch_size=8, jit_compile=True)
  config.synthesis.num_trajectories = 1
  config.optimizer.lr = 0.1
  config.optimizer.decay_epochs = (100,)
  config.model.head_init_stds = (0.025, 0.001)
  workdir = str(tmp_path / "visible")
  m = pretrain.train(config, data_dir=None, workdir=workdir, strategy="default",
                     dataset_fn=visible_boxes_dataset_fn)
  assert m["status"] == "completed" and m["global_step"] == 80
  assert m["iou"] > m["iou_static"] + 0.03, m


def test_steps_per_execution_trains_the_same_steps(tmp_path):
  """Several steps per tf.function call (what TPUs want) reach the same step count and loss."""
  from ctp_tf.training import pretrain
  results = []
  for spe in (1, 2):
    config = tiny_config(epochs=2, steps_per_epoch=4, steps_per_execution=spe,
                         backup_every_steps=2)
    results.append(pretrain.train(config, data_dir=None, workdir=str(tmp_path / f"spe{spe}"),
                                  strategy="default", dataset_fn=synthetic_dataset_fn))
  one, two = results
  assert one["status"] == two["status"] == "completed"
  assert one["global_step"] == two["global_step"] == 8
  np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)


def test_bad_input_fails_before_model_build(tmp_path, tiny_data_dir):
  from ctp_tf.training import pretrain
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(pretrain.PretrainError, match="no 'train' shards"):
    pretrain.train(tiny_config(), data_dir=str(empty), workdir=str(tmp_path / "w"),
                   strategy="default", model_fn=_no_model)
  with pytest.raises(pretrain.PretrainError, match="does not exist"):
    pretrain.train(tiny_config(), data_dir=str(tmp_path / "missing"),
                   workdir=str(tmp_path / "w"), strategy="default", model_fn=_no_model)
  big = tiny_config(batch_size=64, steps_per_epoch=0)   # 6 videos in the tiny set
  with pytest.raises(pretrain.PretrainError, match="larger than the 6 training videos"):
    pretrain.train(big, data_dir=tiny_data_dir, workdir=str(tmp_path / "w"),
                   strategy="default", model_fn=_no_model)
  with pytest.raises(pretrain.PretrainError, match="needs a GPU"):
    pretrain.train(tiny_config(precision="float16"), data_dir=tiny_data_dir,
                   workdir=str(tmp_path / "w"), strategy="default", model_fn=_no_model)
  odd = tiny_config(global_batch_size=5)
  with pytest.raises(pretrain.PretrainError, match="does not divide over the 2 replicas"):
    pretrain.plan_batches(odd, num_replicas=2, num_videos=100)
  assert pretrain.plan_batches(tiny_config(global_batch_size=6), 2, 100) == (3, 6, 3)
  assert pretrain.plan_batches(tiny_config(steps_per_epoch=0), 2, 100) == (2, 4, 25)


def test_misspelt_config_key_lists_close_keys():
  proc = subprocess.run([sys.executable, SCRIPT, "--config.train.bacth_size=4"],
                        capture_output=True, text=True, timeout=60, env=_env())
  assert proc.returncode == 2
  assert "--config.train.bacth_size" in proc.stderr
  assert "--config.train.batch_size" in proc.stderr and "Traceback" not in proc.stderr
  proc = subprocess.run([sys.executable, SCRIPT, "--config.modle.squeeze=False"],
                        capture_output=True, text=True, timeout=60, env=_env())
  assert proc.returncode == 2 and "--config.model.squeeze" in proc.stderr


def test_reference_configs_hold_the_paper_numbers():
  from ctp_tf.training.config_utils import load_config_file
  for name, epochs, decay in [("ucf101_r3d18", 300, (100, 200)),
                              ("ucf101_r2plus1d18", 300, (100, 200)),
                              ("k400_r3d18", 90, (30, 60)), ("k400_r2plus1d18", 90, (30, 60))]:
    c = load_config_file(os.path.join(REPO, "configs", f"{name}.py"))
    assert c.train.epochs == epochs and tuple(c.optimizer.decay_epochs) == decay, name
    assert c.train.batch_size == 32 and c.optimizer.lr == 0.01 and c.optimizer.momentum == 0.9
    assert c.optimizer.weight_decay == 1e-4 and c.optimizer.clip_norm == 40.0
    assert c.model.arch == ("r2plus1d_18" if "r2plus1d" in name else "r3d_18")
    assert c.data.clip_len == 16 and c.data.crop_size == 112
