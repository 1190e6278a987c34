"""Finetuning: exact encoder restore from an export, a tiny finetune + evaluate run, resume
after SIGKILL, Figure-1 curves, and export from a pretraining workdir."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ctp_tf import defaults, models
from ctp_tf.downstream import evaluate, export, finetune
from ctp_tf.training.config_utils import load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH, WIDTH, CLIP = "r3d_10", 0.125, (8, 32, 32)


def tiny_config(epochs=2, steps=2):
  """configs/tiny.py:finetune (ARCH at WIDTH on CLIP clips) for `epochs` x `steps`."""
  c = load_config_file(os.path.join(ROOT, "configs", "tiny.py:finetune"))
  assert (c.model.arch, c.model.width_multiplier, c.data.clip_len) == (ARCH, WIDTH, CLIP[0])
  c.train.epochs = epochs
  c.train.steps_per_epoch = steps
  return c


@pytest.fixture(scope="module")
def encoder_export(tmp_path_factory):
  import keras
  keras.utils.set_random_seed(3)
  backbone = models.build_backbone(ARCH, "pretrain", width_multiplier=WIDTH)
  rng = np.random.default_rng(1)
  for v in backbone.weights:   # distinctive values everywhere, BN statistics included
    v.assign(rng.normal(0, 0.05, v.shape).astype("float32") + (1.0 if "variance" in v.path
                                                                else 0.0))
  d = str(tmp_path_factory.mktemp("ft_export") / "enc")
  export.export_encoder(backbone, d, config={"arch": ARCH, "width_multiplier": WIDTH},
                        clip_shape=CLIP)
  return backbone, d


def test_init_from_export_restores_encoder_exactly(encoder_export):
  backbone, d = encoder_export
  clf, export_cfg = finetune.build_classifier(tiny_config(), 5, init_from=d)
  assert export_cfg["arch"] == ARCH
  got = clf.backbone.weights
  assert len(got) == len(backbone.weights) > 0
  for a, b in zip(got, backbone.weights):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
  # The head is new: N(0, 0.001) kernel.
  dense = clf.get_layer("logits")
  assert float(np.std(np.asarray(dense.kernel))) < 0.01

  bad = tiny_config()
  bad.model.arch = "r3d_18"
  with pytest.raises(export.ExportError, match="holds a r3d_10 encoder, but r3d_18"):
    finetune.build_classifier(bad, 5, init_from=d)
  with pytest.raises(export.ExportError, match="does not exist"):
    finetune.build_classifier(tiny_config(), 5, init_from=d + "_missing")


def test_finetune_then_evaluate_end_to_end(encoder_export, tiny_data_dir, tmp_path):
  _, d = encoder_export
  workdir = str(tmp_path / "ft")
  res = finetune.finetune(tiny_config(), data_dir=tiny_data_dir, workdir=workdir,
                          init_from=d, strategy="default")
  assert res["epochs"] == 2 and np.isfinite(res["loss"])
  with open(os.path.join(workdir, "history.json")) as f:
    hist = json.load(f)["epochs"]
  assert [e["epoch"] for e in hist] == [1, 2]
  assert all(0.0 <= e["val_top1"] <= e["val_top5"] <= 1.0 for e in hist)
  assert {"loss", "acc", "learning_rate"} <= set(hist[0])
  # lr 0.02 scaled by batch 2 / 32, x0.1 from epoch 1 on (StepLogs logs the rate of the
  # step about to run, so both epochs' rows show the decayed rate).
  assert hist[1]["learning_rate"] == pytest.approx(0.002 * 2 / 32)
  for name in ("config.json", "final.weights.h5", "log.csv"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.listdir(os.path.join(workdir, "tb"))

  out = str(tmp_path / "eval.json")
  ev = evaluate.evaluate(workdir, tiny_data_dir, num_clips=2, output=out)
  with open(out) as f:
    assert json.load(f)["top1"] == ev["top1"]
  assert ev["num_videos"] == 4 and set(ev["per_class"]) == {"class0", "class1"}
  assert np.sum(ev["confusion_matrix"]) == 4
  assert os.path.getsize(ev["confusion_png"]) > 1000
  # The final model is the last epoch's: its 10-clip accuracy is what validation logged.
  assert ev["top1"] == pytest.approx(hist[-1]["val_top1"])
  assert ev["top5"] == 1.0                       # 2 classes: always within the top 5
  # A finished run is not retrained when called again.
  mtime = os.path.getmtime(os.path.join(workdir, "final.weights.h5"))
  assert finetune.finetune(tiny_config(), data_dir=tiny_data_dir, workdir=workdir,
                           init_from=d)["epochs"] == 2
  assert os.path.getmtime(os.path.join(workdir, "final.weights.h5")) == mtime

  from ctp_tf import curves
  png = str(tmp_path / "fig1.png")
  curves.plot_curves([workdir, workdir], ["scratch", "CtP"], png)
  assert os.path.getsize(png) > 5000
  with pytest.raises(ValueError, match="one label per run"):
    curves.plot_curves([workdir], ["a", "b"], png)


def test_resume_after_sigkill(tiny_data_dir, tmp_path):
  workdir = str(tmp_path / "ft_kill")
  epochs, steps = 2, 3
  config_file = tmp_path / "tiny_finetune.py"
  config_file.write_text("import ml_collections\n\ndef get_config():\n  return "
                         f"ml_collections.ConfigDict({tiny_config(epochs, steps).to_dict()!r})\n")
  cmd = [sys.executable, os.path.join(ROOT, "scripts", "finetune.py"), f"--config={config_file}",
         f"--data_dir={tiny_data_dir}", f"--workdir={workdir}", "--strategy=default",
         "--config.train.eval_every_epochs=2"]
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
  backup = os.path.join(workdir, "backup")

  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  deadline = time.time() + 240
  killed_at = None
  while time.time() < deadline and proc.poll() is None:
    steps_saved = [int(f[5:14]) for f in os.listdir(backup) if f.endswith(".json")] \
        if os.path.isdir(backup) else []
    if steps_saved and max(steps_saved) >= 4:   # inside epoch 2
      proc.send_signal(signal.SIGKILL)
      killed_at = max(steps_saved)
      break
    time.sleep(0.2)
  proc.wait(timeout=60)
  assert killed_at is not None, proc.stdout.read()[-3000:]
  assert not os.path.exists(os.path.join(workdir, "final.weights.h5"))

  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert "resuming at step" in proc.stdout
  with open(os.path.join(workdir, "history.json")) as f:
    hist = json.load(f)["epochs"]
  assert [e["epoch"] for e in hist] == [1, 2]
  assert hist[-1]["global_step"] == epochs * steps
  assert os.path.exists(os.path.join(workdir, "final.weights.h5"))


def test_resume_restores_weights_optimizer_and_step(tiny_data_dir, tmp_path, monkeypatch):
  """A run that crashes in epoch 2, then resumes: the state training resumes with equals the
  newest backup tensor by tensor (weights incl. BN statistics, momentum slots, step)."""
  import shutil
  from pretrain_helpers import assert_state_equals_backup, model_state
  from ctp_tf.training import callbacks as cbs
  from ctp_tf.training import checkpoint as ckpt

  class Crash(RuntimeError):
    pass

  state = {}

  class Probe(cbs.NanGuard):   # NanGuard is finetune's first callback: sees the state first
    crash_at = None

    def on_train_begin(self, logs=None):
      state.setdefault("start", model_state(self.model))

    def on_train_batch_end(self, batch, logs=None):
      if self.crash_at and ckpt.global_step(self.model) >= self.crash_at:
        raise Crash()   # before StepBackup saves this step
      super().on_train_batch_end(batch, logs)

  monkeypatch.setattr(cbs, "NanGuard", Probe)
  workdir = str(tmp_path / "ft_crash")
  config = tiny_config(epochs=2, steps=3)
  config.train.eval_every_epochs = 2
  Probe.crash_at = 5
  with pytest.raises(Crash):
    finetune.finetune(config, data_dir=tiny_data_dir, workdir=workdir, strategy="default")
  newest = ckpt.list_backups(os.path.join(workdir, "backup"))[0]
  assert newest["step"] == 4
  backup = str(tmp_path / "backup.weights.h5")
  shutil.copy(newest["weights"], backup)
  initial = state.pop("start")

  Probe.crash_at = None
  finetune.finetune(config, data_dir=tiny_data_dir, workdir=workdir, strategy="default")
  weights, opt_vars = state["start"]
  assert_state_equals_backup(weights, opt_vars, backup, step=4)
  # The backup is not the fresh model (so the comparison above can fail).
  assert any(not np.array_equal(a, b) for a, b in zip(initial[0], weights))


def test_export_from_pretraining_workdir(tmp_path):
  """scripts/export.py's library call on a workdir laid out like ctp_tf.training.pretrain's."""
  from ctp_tf import fileio
  from ctp_tf.training import optimizer

  config = defaults.pretrain_config()
  config.data.clip_len, config.data.crop_size = CLIP[0], CLIP[1]
  config.model.arch, config.model.width_multiplier, config.model.hidden = ARCH, WIDTH, 16
  model = models.build_ctp_model(config.model, clip_shape=CLIP, num_boxes=3)
  boxes = np.tile(np.array([0, 0, 8, 8], np.float32), (1, 3, CLIP[0], 1))
  model({"clip": np.zeros((1,) + CLIP + (3,), np.uint8), "boxes": boxes}, training=False)
  model.compile(optimizer=optimizer.make_optimizer(config.optimizer, 10, 8))
  model.optimizer.build(model.trainable_variables)
  rng = np.random.default_rng(5)
  for v in model.backbone.weights:
    v.assign(rng.normal(0, 0.05, v.shape).astype("float32"))
  workdir = tmp_path / "pre"
  (workdir / "checkpoints").mkdir(parents=True)
  fileio.write_json_atomic(str(workdir / "config.json"), {"config": config.to_dict(), "run": {}})
  with pytest.raises(FileNotFoundError, match="nothing to export"):
    export.export_from_workdir(str(workdir), str(tmp_path / "e"))
  fileio.save_weights_atomic(model, str(workdir / "checkpoints" / "epoch-0001.weights.h5"))
  cfg = export.export_from_workdir(str(workdir), str(tmp_path / "e"))
  assert cfg["source"].endswith("epoch-0001.weights.h5") and cfg["clip_shape"] == list(CLIP)
  encoder, _ = export.load_encoder(str(tmp_path / "e"), arch=ARCH)
  for a, b in zip(encoder.weights, model.backbone.weights):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
