"""Strategies: MirroredStrategy over 2 logical CPUs equals one device; 2-worker
MultiWorkerMirroredStrategy ends with identical weights; bad strategy requests fail early."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "pretrain_worker.py")


def _env(**extra):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def _run(spec, timeout=240, **env):
  proc = subprocess.run([sys.executable, WORKER, json.dumps(spec)], capture_output=True,
                        text=True, timeout=timeout, env=_env(**env))
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


# Strong updates (lr 0.5 at batch 4 after scaling) and an active clip (0.05): a clip taken per
# replica before the cross-replica sum, or a loss not divided by the replicas, would show.
_OVERRIDES = {"train.epochs": 1, "train.steps_per_epoch": 3, "optimizer.lr": 4.0,
              "optimizer.clip_norm": 0.05, "optimizer.decay_epochs": [], "train.log_images": False}


def test_mirrored_two_cpus_matches_one_device(tmp_path):
  runs = [
      dict(workdir=str(tmp_path / "one"), strategy="default", data="pool",
           out=str(tmp_path / "one.npz"), result=str(tmp_path / "one.json"),
           out_init=str(tmp_path / "init.npz"),
           overrides=dict(_OVERRIDES, **{"train.batch_size": 4})),
      dict(workdir=str(tmp_path / "two"), strategy="mirrored", data="pool",
           out=str(tmp_path / "two.npz"), result=str(tmp_path / "two.json"),
           overrides=dict(_OVERRIDES, **{"train.batch_size": 2})),
  ]
  runs[0]["logical_cpus"] = 2
  _run(runs)
  one = json.load(open(tmp_path / "one.json"))
  two = json.load(open(tmp_path / "two.json"))
  cfg_two = json.load(open(tmp_path / "two" / "config.json"))["run"]
  assert cfg_two["replicas"] == 2 and cfg_two["global_batch"] == 4
  assert one["global_step"] == two["global_step"] == 3
  for k in ("loss", "loss_ctr", "loss_size", "iou", "iou_static"):
    np.testing.assert_allclose(two[k], one[k], rtol=2e-4, atol=1e-6, err_msg=k)
  w1, w2 = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
  init = np.load(tmp_path / "init.npz")
  d1 = np.concatenate([(w1[k] - init[k]).ravel() for k in w1.files])
  d2 = np.concatenate([(w2[k] - init[k]).ravel() for k in w1.files])
  # The weights really moved, and by the same update: clipping each replica's gradient
  # (Keras' own global_clipnorm under a strategy) makes the update up to twice as long.
  assert np.linalg.norm(d1) > 1e-3
  assert np.linalg.norm(d2 - d1) / np.linalg.norm(d1) < 1e-2


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_multi_worker_two_processes_identical_weights(tmp_path):
  """2 workers x batch 2 on the same global batches as one process with batch 4: identical
  weights on both workers, and the logged loss and metrics equal the single process's."""
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  workdir = str(tmp_path / "run")
  overrides = dict(_OVERRIDES, **{"train.epochs": 2, "train.steps_per_epoch": 2,
                                  "train.backup_every_steps": 1})
  procs = []
  for i in range(2):
    spec = dict(workdir=workdir, strategy="multi_worker", data="pool",
                out=str(tmp_path / f"w{i}.npz"), result=str(tmp_path / f"w{i}.json"),
                step_logs=str(tmp_path / f"w{i}_steps.json"),
                overrides=dict(overrides, **{"train.batch_size": 2}))
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
    procs.append(subprocess.Popen([sys.executable, WORKER, json.dumps(spec)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=_env(TF_CONFIG=tf_config)))
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=300))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-4000:]
  w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
  assert w0.files == w1.files and len(w0.files) > 10
  for k in w0.files:
    np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
  m0, m1 = json.load(open(tmp_path / "w0.json")), json.load(open(tmp_path / "w1.json"))
  assert m0["global_step"] == m1["global_step"] == 4 and m0["status"] == "completed"
  run = json.load(open(os.path.join(workdir, "config.json")))["run"]
  assert run["workers"] == 2 and run["replicas"] == 2 and run["global_batch"] == 4
  # Only the chief wrote into the workdir, and its backups are complete and readable.
  backups = sorted(f for f in os.listdir(os.path.join(workdir, "backup")) if f.endswith(".json"))
  assert backups and json.load(open(os.path.join(workdir, "backup", backups[-1])))[
      "global_step"] == 4
  # The logged loss is the mean over workers, not their sum (notes: it came out doubled):
  # it equals a single process's on the same global batches of 4.
  assert abs(m0["loss"] - m1["loss"]) < 1e-5
  _run(dict(workdir=str(tmp_path / "single"), strategy="default", data="pool",
            out=str(tmp_path / "single.npz"), result=str(tmp_path / "single.json"),
            step_logs=str(tmp_path / "single_steps.json"),
            overrides=dict(overrides, **{"train.batch_size": 4})))
  single = json.load(open(tmp_path / "single.json"))
  assert single["global_step"] == 4
  for k in ("loss", "loss_ctr", "loss_size", "iou", "iou_static"):
    np.testing.assert_allclose(m0[k], single[k], rtol=2e-4, atol=1e-6, err_msg=k)
  # Per step too (what the step callbacks, e.g. TensorBoard, log).
  steps = json.load(open(tmp_path / "w0_steps.json"))
  steps_single = json.load(open(tmp_path / "single_steps.json"))
  assert len(steps) == len(steps_single) == 4
  for got, want in zip(steps, steps_single):
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=2e-4, atol=1e-6)
  ws = np.load(tmp_path / "single.npz")
  for k in w0.files:
    np.testing.assert_allclose(w0[k], ws[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_strategy_errors_are_clear(monkeypatch):
  from ctp_tf.training import strategy as strat
  monkeypatch.delenv("TF_CONFIG", raising=False)
  with pytest.raises(strat.StrategyError, match="TF_CONFIG"):
    strat.get_strategy("multi_worker")
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(strat.StrategyError, match="not valid JSON"):
    strat.get_strategy("multi_worker")
  with pytest.raises(strat.StrategyError, match="one of"):
    strat.get_strategy("mirored")
  s = strat.get_strategy("auto")   # no GPU here: the default strategy
  assert s.num_replicas_in_sync == 1 and strat.is_chief(s)
