"""tf.data service: a dispatcher and two workers in this process on localhost.

The service run yields the same multiset of clips as a local run of the same seeds; training
reads from it and finishes although a worker stops mid-run; the script's user errors.
"""

import hashlib
import os
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from pretrain_helpers import REPO, tiny_config

from ctp_tf.data import pretrain_input

SERVICE = tf.data.experimental.service


@pytest.fixture()
def service():
  dispatcher = SERVICE.DispatchServer(SERVICE.DispatcherConfig(port=0, worker_timeout_ms=1000))
  address = dispatcher.target.split("://")[1]
  workers = [SERVICE.WorkerServer(SERVICE.WorkerConfig(dispatcher_address=address,
                                                       heartbeat_interval_ms=200))
             for _ in range(2)]
  yield dispatcher, workers
  for w in workers:
    w._stop()   # pylint: disable=protected-access  (the only way to stop one in-process)
  dispatcher._stop()   # pylint: disable=protected-access


def _clip_keys(ds):
  keys = []
  for batch in ds:
    clip, boxes = batch["clip"].numpy(), batch["boxes"].numpy()
    keys += [hashlib.sha1(c.tobytes() + b.tobytes()).hexdigest() for c, b in zip(clip, boxes)]
  return keys


def _config():
  c = tiny_config()
  c.data.clip_len = 8
  return c


def test_service_yields_the_clips_of_a_local_run(tiny_data_dir, service):
  dispatcher, _ = service
  cfg = _config()
  cfg.data.clip_seeds = "video"
  make = lambda **kw: pretrain_input.pretrain_dataset(tiny_data_dir, cfg, batch_size=2, seed=4,
                                                      repeat=False, **kw)
  local = _clip_keys(make())
  remote = _clip_keys(make(service_address=dispatcher.target))
  assert len(local) == 6 and len(set(local)) == 6       # the 6 training videos, once each
  assert sorted(remote) == sorted(local)
  # The config key does the same as the argument.
  cfg.data.service_address = dispatcher.target
  assert sorted(_clip_keys(make())) == sorted(local)
  other = pretrain_input.pretrain_dataset(tiny_data_dir, cfg, batch_size=2, seed=5, repeat=False)
  assert not set(_clip_keys(other)) & set(local)        # another seed, other clips


def test_clips_come_from_the_workers(tiny_data_dir):
  """No worker, no clips; a worker joins, clips flow (the client does not read locally)."""
  dispatcher = SERVICE.DispatchServer(SERVICE.DispatcherConfig(port=0))
  ds = pretrain_input.pretrain_dataset(tiny_data_dir, _config(), batch_size=2, seed=0,
                                       service_address=dispatcher.target)
  graph = ds._as_serialized_graph().numpy()   # pylint: disable=protected-access
  assert b"DataServiceDataset" in graph
  got = []
  reader = threading.Thread(target=lambda: got.append(next(iter(ds))), daemon=True)
  reader.start()
  reader.join(4)
  assert not got
  worker = SERVICE.WorkerServer(SERVICE.WorkerConfig(
      dispatcher_address=dispatcher.target.split("://")[1], heartbeat_interval_ms=200))
  reader.join(120)
  assert got and got[0]["clip"].shape == (2, 8, 32, 32, 3)
  worker._stop()   # pylint: disable=protected-access
  dispatcher._stop()   # pylint: disable=protected-access


def test_training_reads_from_the_service_and_survives_a_stopped_worker(tiny_data_dir, service,
                                                                       tmp_path):
  from ctp_tf.training import pretrain
  dispatcher, workers = service
  cfg = _config()
  cfg.data.service_address = dispatcher.target
  cfg.synthesis.placement = "accelerator"      # the host part runs on the workers too
  cfg.train.epochs = 2
  cfg.train.steps_per_epoch = 4
  cfg.train.backup_every_steps = 100
  read = []

  class StopOneWorker(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      read.append(batch)
      if len(read) == 3:
        workers[1]._stop()   # pylint: disable=protected-access

  metrics = pretrain.train(cfg, data_dir=tiny_data_dir, workdir=str(tmp_path / "run"),
                           callbacks=[StopOneWorker()])
  assert metrics["status"] == "completed" and metrics["global_step"] == 8, metrics
  assert len(read) == 8 and np.isfinite(metrics["loss"])


def test_bad_service_address_is_one_line_and_exit_2(tiny_data_dir, tmp_path):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  script = os.path.join(REPO, "scripts", "pretrain.py")
  for address, words in [("http://x:1", "not grpc://host:port"),
                         ("grpc://127.0.0.1:1", "cannot reach")]:
    r = subprocess.run([sys.executable, script, "--config=" + os.path.join(REPO, "configs",
                                                                            "tiny.py"),
                        f"--data_dir={tiny_data_dir}", f"--workdir={tmp_path}/w",
                        f"--data_service={address}"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and words in r.stderr.strip().splitlines()[-1], r.stderr
  r = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "data_service.py"),
                      "--mode=worker"], env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and "needs --dispatcher" in r.stderr and "Traceback" not in r.stderr


def _readline(proc, timeout):
  """A line of the process's stdout, or "" after `timeout` seconds (never blocks longer)."""
  line = []
  t = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
  t.start()
  t.join(timeout)
  return line[0] if line else ""


CLIENT = """
import sys
from pretrain_helpers import tiny_config
from ctp_tf.data import pretrain_input
c = tiny_config(); c.data.clip_len = 8
ds = pretrain_input.pretrain_dataset(sys.argv[1], c, batch_size=2, seed=0, service_address=sys.argv[2])
print("CLIP", tuple(next(iter(ds))["clip"].shape))
"""


def test_script_starts_a_dispatcher_and_a_worker_that_serve_clips(tiny_data_dir):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  script = os.path.join(REPO, "scripts", "data_service.py")
  procs = []
  try:
    procs.append(subprocess.Popen([sys.executable, script, "--mode=dispatcher", "--port=0"],
                                  env=env, stdout=subprocess.PIPE, text=True))
    line = _readline(procs[0], 120)
    assert line.startswith("dispatcher serving at grpc://"), line
    target = line.split()[-1]
    procs.append(subprocess.Popen([sys.executable, script, "--mode=worker",
                                   f"--dispatcher={target}"], env=env, stdout=subprocess.PIPE,
                                  text=True))
    assert "worker serving" in _readline(procs[1], 120)
    # The trainer's side in its own process: a hung read ends with the timeout, not pytest.
    client_env = dict(env, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, "tests"), REPO, os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", CLIENT, tiny_data_dir, target], env=client_env,
                       capture_output=True, text=True, timeout=240)
    assert "CLIP (2, 8, 32, 32, 3)" in r.stdout, r.stderr[-2000:]
  finally:
    for p in procs:
      p.kill()
      p.wait()
