"""Issue 15: no crash, no hang, no silent loss.

Empty and damaged data stop with a line naming the split, directory or file; workdirs have a
lock, a kind and a model fingerprint; resume is all-or-nothing and falls back past unreadable
files to the newest readable backup or checkpoint; a diverging loss stops the run and the
backups it had already spoilt are not resumed from; every script answers a user mistake with
one stderr line and exit status 2. (The serving-input probes are in test_export.py.)
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from pretrain_helpers import REPO, synthetic_dataset_fn, tiny_config

SCRIPTS = os.path.join(REPO, "scripts")


def _env():
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("TF_CONFIG", None)
  return env


def _script(name, *args, timeout=180):
  return subprocess.run([sys.executable, os.path.join(SCRIPTS, f"{name}.py"), *args],
                        capture_output=True, text=True, timeout=timeout, env=_env())


def _assert_one_line_error(proc, *needles, code=2):
  err_lines = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
  assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert len(err_lines) == 1, proc.stderr[-3000:]
  for n in needles:
    assert n in err_lines[0], (n, err_lines[0])
  return err_lines[0]


def _empty_split_dir(path, tiny_data_dir):
  """A converted dataset whose train split has 0 videos (empty shard, as the converter left
  it) and whose test split is the tiny one."""
  os.makedirs(path)
  for f in glob.glob(os.path.join(tiny_data_dir, "test-*")):
    shutil.copy(f, path)
  open(os.path.join(path, "train-00000-of-00001.tfrecord"), "wb").close()
  meta = json.load(open(os.path.join(tiny_data_dir, "dataset.json")))
  meta["splits"]["train"] = {"videos": 0, "frames": 0, "shards": 1}
  json.dump(meta, open(os.path.join(path, "dataset.json"), "w"))
  return str(path)


def _damaged_copy(path, tiny_data_dir, how):
  shutil.copytree(tiny_data_dir, path)
  victim = sorted(glob.glob(os.path.join(path, "test-*.tfrecord")))[-1]
  data = bytearray(open(victim, "rb").read())
  if how == "truncated":
    data = data[:len(data) * 2 // 3]
  else:   # one flipped bit in the middle of a record's payload
    data[len(data) // 2] ^= 0x10
  open(victim, "wb").write(bytes(data))
  return str(path), victim


# ---------------------------------------------------------------- empty and damaged data --


def test_every_reader_stops_at_once_on_an_empty_split(tmp_path, tiny_data_dir):
  from ctp_tf.data import finetune_input, reader
  from ctp_tf.downstream import finetune, retrieval
  from ctp_tf.training import pretrain
  from ctp_tf.errors import DataError
  d = _empty_split_dir(tmp_path / "data", tiny_data_dir)
  t0 = time.time()
  # pretraining, even with steps_per_epoch set (what the old error advised, and which hung)
  with pytest.raises(pretrain.PretrainError, match=r"split 'train' in --data_dir=.*data has 0 "):
    pretrain.train(tiny_config(), data_dir=d, workdir=str(tmp_path / "w"), strategy="default")
  assert not os.path.exists(tmp_path / "w")   # refused before anything was written
  with pytest.raises(DataError, match=r"split 'train' in --data_dir=.*data has 0 videos"):
    ft = finetune_tiny_config()
    finetune.finetune(ft, data_dir=d, workdir=str(tmp_path / "ft"), strategy="default")
  # the readers below the libraries: the repeating training stream, the 10-clip eval reader
  # (evaluate, retrieval)
  for make in (lambda: finetune_input.finetune_dataset(d, ft.data, split="train", batch_size=2,
                                                       seed=0, repeat=True),
               lambda: finetune_input.eval_dataset(d, "train", num_clips=2, clip_len=8,
                                                   stride=1, crop_size=32, batch_size=2),
               lambda: retrieval.extract_features(lambda c: None, d, "train", num_clips=2,
                                                  clip_len=8, crop_size=32)):
    with pytest.raises(reader.EmptySplitError, match=r"split 'train' in '.*data' has 0 videos"):
      make()
  assert time.time() - t0 < 60


def finetune_tiny_config():
  from ctp_tf.training.config_utils import load_config_file
  return load_config_file(os.path.join(REPO, "configs", "tiny.py:finetune"))


@pytest.mark.parametrize("how", ["truncated", "bitflip"])
def test_damaged_shard_error_names_the_file(tmp_path, tiny_data_dir, how):
  from ctp_tf.data import finetune_input, reader
  d, victim = _damaged_copy(tmp_path / "data", tiny_data_dir, how)
  ds = finetune_input.eval_dataset(d, "test", num_clips=2, clip_len=8, stride=1, crop_size=32,
                                   batch_size=2)
  with pytest.raises(reader.CorruptShardError) as e:
    with reader.naming_bad_shards(d, "test"):
      for _ in ds:
        pass
  assert victim in str(e.value) and "\n" not in str(e.value)


def test_garbage_file_named_like_a_shard_is_named(tmp_path, tiny_data_dir):
  from ctp_tf.data import reader
  d = str(tmp_path / "data")
  shutil.copytree(tiny_data_dir, d)
  victim = sorted(glob.glob(os.path.join(d, "train-*.tfrecord")))[0]
  open(victim, "wb").write(b"<html>not a shard</html>" * 10)
  with pytest.raises(reader.CorruptShardError, match=os.path.basename(victim)):
    reader.read_videos(d, "train", shuffle=False, seed=0)


# ------------------------------------------------------------------------------ workdirs --


def test_workdir_lock_kind_and_fingerprint(tmp_path):
  from ctp_tf.errors import WorkdirError
  from ctp_tf.training import workdir as wl
  w = str(tmp_path / "w")
  fields = {"model": {"arch": "r3d_10", "width_multiplier": 0.125}}
  # A live other run holds the lock: refused at once, naming its pid.
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    os.makedirs(w)
    json.dump({"pid": sleeper.pid, "host": os.uname().nodename, "since": time.time()},
              open(os.path.join(w, wl.LOCK_FILE), "w"))
    with pytest.raises(WorkdirError, match=f"in use by another run \\(pid {sleeper.pid}"):
      with wl.claim(w, "pretrain", fields):
        pass
  finally:
    sleeper.kill()
    sleeper.wait()
  # Its pid is dead now: the stale lock is taken over.
  with wl.claim(w, "pretrain", fields):
    assert json.load(open(os.path.join(w, wl.LOCK_FILE)))["pid"] == os.getpid()
    # ... and while we hold it, a nested claim (a second run) is refused too.
    with pytest.raises(WorkdirError, match="in use"):
      json.dump({"pid": os.getppid(), "host": os.uname().nodename},
                open(os.path.join(w, wl.LOCK_FILE), "w"))
      with wl.claim(w, "pretrain", fields):
        pass
    json.dump({"pid": os.getpid(), "host": os.uname().nodename},
              open(os.path.join(w, wl.LOCK_FILE), "w"))
  assert not os.path.exists(os.path.join(w, wl.LOCK_FILE))   # released
  # The other kind is refused, with or without --overwrite.
  for overwrite in (False, True):
    with pytest.raises(WorkdirError, match="is a pretrain workdir"):
      with wl.claim(w, "finetune", fields, overwrite=overwrite):
        pass
  # Another model: refused, naming the change and both ways out; --overwrite clears.
  other = {"model": {"arch": "r3d_10", "width_multiplier": 0.25}}
  open(os.path.join(w, "keep.txt"), "w").close()
  with pytest.raises(WorkdirError, match=r"width_multiplier 0.125 -> 0.25.*new --workdir.*"
                                         r"--overwrite"):
    with wl.claim(w, "pretrain", other):
      pass
  assert os.path.exists(os.path.join(w, "keep.txt"))
  with wl.claim(w, "pretrain", other, overwrite=True):
    assert not os.path.exists(os.path.join(w, "keep.txt"))


def test_two_runs_on_one_workdir_second_stops_at_once(tmp_path, tiny_data_dir):
  """A real second process on a workdir in use exits 2 at once (it used to interleave)."""
  from ctp_tf.training import workdir as wl
  w = str(tmp_path / "w")
  code = ("import sys, time\nfrom ctp_tf.training import workdir as wl\n"
          "with wl.claim(sys.argv[1], 'pretrain', {'m': 1}):\n"
          "  print('HOLDING', flush=True); time.sleep(60)\n")
  holder = subprocess.Popen([sys.executable, "-c", code, w], stdout=subprocess.PIPE, text=True,
                            env=_env())
  try:
    assert holder.stdout.readline().strip() == "HOLDING"
    t0 = time.time()
    proc = _script("pretrain", "--config=" + os.path.join(REPO, "configs", "tiny.py"),
                   f"--workdir={w}", f"--data_dir={tiny_data_dir}")
    _assert_one_line_error(proc, "in use by another run", f"pid {holder.pid}")
    assert time.time() - t0 < 60
  finally:
    holder.kill()
    holder.wait()
  assert wl.kind_of(w) == "pretrain"


# ----------------------------------------------------------------- resume and divergence --


def _train(config, workdir, **kw):
  from ctp_tf.training import pretrain
  return pretrain.train(config, data_dir=None, workdir=workdir, strategy="default",
                        dataset_fn=synthetic_dataset_fn, **kw)


def test_rerun_with_another_model_is_refused_and_keeps_the_result(tmp_path):
  from ctp_tf.errors import WorkdirError
  w = str(tmp_path / "run")
  m = _train(tiny_config(epochs=1, steps_per_epoch=2), w)
  assert m["status"] == "completed"
  export_mtime = os.path.getmtime(os.path.join(w, "export", "config.json"))
  wider = tiny_config(epochs=2, steps_per_epoch=2)
  wider.model.width_multiplier = 0.25
  with pytest.raises(WorkdirError, match=r"another model.*width_multiplier 0.125 -> 0.25.*"
                                         r"--overwrite"):
    _train(wider, w)
  assert os.path.getmtime(os.path.join(w, "export", "config.json")) == export_mtime
  assert json.load(open(os.path.join(w, "metrics.json")))["status"] == "completed"
  # A backup whose fingerprint differs is refused by the restore itself (not half-loaded).
  from ctp_tf.training import checkpoint as ckpt
  b = ckpt.list_backups(os.path.join(w, "backup"))[0]
  meta = json.load(open(b["json"]))
  meta["fingerprint"] = "0" * 16
  json.dump(meta, open(b["json"], "w"))
  with pytest.raises(WorkdirError, match="written for another model.*--overwrite"):
    _train(tiny_config(epochs=2, steps_per_epoch=2), w)
  m = _train(wider, w, overwrite=True)     # --overwrite: afresh
  assert m["status"] == "completed" and m["resumed_from_step"] == 0


def test_restore_is_all_or_nothing(tmp_path):
  """A backup that does not fit (an old one without fingerprint, of another width) leaves
  weights, optimizer and step untouched, and is set aside."""
  import keras
  from ctp_tf.training import optimizer as optim
  from ctp_tf.training import checkpoint as ckpt
  from ctp_tf import fileio
  from ctp_tf.models import build_ctp_model
  from ctp_tf.training.pretrain import _dummy_batch

  def build(width):
    c = tiny_config()
    c.model.width_multiplier = width
    model = build_ctp_model(c.model, clip_shape=(8, 32, 32), num_boxes=2)
    model(_dummy_batch((8, 32, 32), 2), training=False)
    model.compile(optimizer=optim.make_optimizer(c.optimizer, 3, 2))
    model.optimizer.build(model.trainable_variables)
    return model

  keras.utils.set_random_seed(0)
  other = build(0.25)
  other.optimizer.iterations.assign(7)
  d = str(tmp_path / "backup")
  os.makedirs(d)
  fileio.save_weights_atomic(other, os.path.join(d, "ckpt-000000007.weights.h5"))
  json.dump({"global_step": 7}, open(os.path.join(d, "ckpt-000000007.json"), "w"))
  model = build(0.125)
  before = [np.array(v) for v in model.weights]
  assert ckpt.restore_latest(model, d) is None
  assert ckpt.global_step(model) == 0
  for a, v in zip(before, model.weights):
    np.testing.assert_array_equal(a, np.asarray(v), err_msg=v.path)
  assert os.path.exists(os.path.join(d, "ckpt-000000007.weights.h5.unreadable"))


def test_unreadable_backups_fall_back_to_the_newest_readable_state(tmp_path):
  """Both backups damaged: resume from the epoch checkpoint (not step 0), and the backups the
  resumed run writes are kept although the damaged ones had higher steps."""
  from ctp_tf.training import checkpoint as ckpt
  w = str(tmp_path / "run")
  m = _train(tiny_config(epochs=2, steps_per_epoch=3, backup_every_steps=2), w)
  assert m["status"] == "completed"
  backups = ckpt.list_backups(os.path.join(w, "backup"))
  assert [b["step"] for b in backups] == [6, 5]
  os.remove(os.path.join(w, "checkpoints", "epoch-0002.weights.h5"))   # newest readable: ep 1
  for b in backups:
    with open(b["weights"], "r+b") as f:
      f.truncate(1000)
  m = _train(tiny_config(epochs=4, steps_per_epoch=3, backup_every_steps=2), w)
  assert m["status"] == "completed" and m["resumed_from_step"] == 3   # epoch-0001 checkpoint
  assert [b["step"] for b in ckpt.list_backups(os.path.join(w, "backup"))] == [12, 11]
  assert len(glob.glob(os.path.join(w, "backup", "*.unreadable"))) == 4   # set aside, kept


def test_divergence_stops_exports_nothing_and_rerun_gets_past_it(tmp_path):
  from ctp_tf.training import checkpoint as ckpt
  w = str(tmp_path / "run")
  config = tiny_config(epochs=2, steps_per_epoch=4, backup_every_steps=1)
  config.optimizer.lr = 1e6
  config.optimizer.clip_norm = 0.0
  config.train.max_loss = 50.0
  m = _train(config, w)
  assert m["status"] == "diverged" and m["global_step"] < m["total_steps"], m
  assert "train.max_loss=50" in m["message"]
  assert not os.path.exists(os.path.join(w, "export"))
  last_good = m["last_good_step"]
  kept = ckpt.list_states(os.path.join(w, "backup"), os.path.join(w, "checkpoints"))
  assert all(s["step"] <= last_good for s in kept), (kept, last_good)
  assert glob.glob(os.path.join(w, "backup", "*.diverged"))
  # The rerun with a sane lr resumes before the divergence and completes.
  sane = tiny_config(epochs=2, steps_per_epoch=4, backup_every_steps=1)
  sane.train.max_loss = 50.0
  m2 = _train(sane, w)
  assert m2["status"] == "completed" and m2["resumed_from_step"] <= last_good, m2
  assert np.isfinite(m2["loss"]) and m2["loss"] < 50
  assert os.path.exists(os.path.join(w, "export"))


def test_finetune_divergence_fails_the_run_and_keeps_nothing_after_it(tmp_path, tiny_data_dir):
  from ctp_tf.downstream import finetune
  from ctp_tf.errors import RunFailed
  from ctp_tf.training import checkpoint as ckpt
  c = finetune_tiny_config()
  c.train.epochs, c.train.steps_per_epoch, c.train.backup_every_steps = 1, 4, 1
  c.optimizer.lr, c.optimizer.clip_norm = 1e6, 0.0
  c.train.max_loss = 20.0
  w = str(tmp_path / "ft")
  with pytest.raises(RunFailed) as e:
    finetune.finetune(c, data_dir=tiny_data_dir, workdir=w, strategy="default")
  import re
  m = re.search(r"stopped at step (\d+): (loss above train.max_loss=20|non-finite loss); "
                r"nothing after step (\d+) is kept", str(e.value))
  assert m, str(e.value)
  trip, good = int(m.group(1)), int(m.group(3))
  assert good < trip
  assert not os.path.exists(os.path.join(w, finetune.FINAL_WEIGHTS))
  # what is left to resume from was written before the loss left its bound
  states = ckpt.list_states(os.path.join(w, "backup"), os.path.join(w, "checkpoints"))
  assert all(s["step"] <= good for s in states), (states, good)
  assert glob.glob(os.path.join(w, "backup", "*.diverged"))


# ------------------------------------------------------------------------------- scripts --


@pytest.fixture(scope="module")
def fake_workdirs(tmp_path_factory):
  """A pretraining workdir, a finetuning workdir (2 classes) and an export, as config files:
  the checks below fire before any weights are read."""
  from ctp_tf import defaults
  root = tmp_path_factory.mktemp("fake")
  pre = root / "pre"
  pre.mkdir()
  json.dump({"config": tiny_config().to_dict(), "run": {}}, open(pre / "config.json", "w"))
  ft = root / "ft"
  ft.mkdir()
  json.dump({"config": finetune_tiny_config().to_dict(), "num_classes": 2,
             "classes": ["a", "b"]}, open(ft / "config.json", "w"))
  open(ft / "final.weights.h5", "wb").close()
  exp = root / "export"
  exp.mkdir()
  open(exp / "encoder.weights.h5", "wb").close()
  json.dump({"format": "ctp_tf.encoder_export", "arch": "r3d_10", "width_multiplier": 0.125,
             "clip_shape": [8, 32, 32]}, open(exp / "config.json", "w"))
  del defaults
  return {"pre": str(pre), "ft": str(ft), "export": str(exp), "root": root}


def test_export_never_replaces_a_workdir_or_a_file(tmp_path):
  """Held-out probe: `export.py --export_dir=WORKDIR` used to rename the whole workdir away
  and delete it; a file there was replaced by the export."""
  from ctp_tf import models
  from ctp_tf.downstream import export
  from ctp_tf.training import workdir as wl
  backbone = models.build_backbone("r3d_10", "pretrain", width_multiplier=0.125)
  w = tmp_path / "pre"
  with wl.claim(str(w), "pretrain", {"m": 1}):
    pass
  (w / "backup").mkdir()
  f = tmp_path / "file"
  f.write_text("keep me")
  for target in (w, f):
    with pytest.raises(export.ExportError, match="--export_dir"):
      export.export_encoder(backbone, str(target), config={"arch": "r3d_10",
                                                           "width_multiplier": 0.125},
                            clip_shape=(8, 32, 32))
  assert sorted(os.listdir(w)) == ["backup", "workdir.json"] and f.read_text() == "keep me"


def _run_all(commands, cwd, parallel=4):
  """Runs script command lines, `parallel` at a time; returns CompletedProcess per command."""
  results, running = [None] * len(commands), []
  for i, args in enumerate(commands):
    running.append((i, args, subprocess.Popen(
        [sys.executable, os.path.join(SCRIPTS, f"{args[0]}.py"), *args[1:]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd)))
    if len(running) == parallel or i == len(commands) - 1:
      for j, a, p in running:
        out, err = p.communicate(timeout=300)
        results[j] = subprocess.CompletedProcess(a, p.returncode, out, err)
      running = []
  return results


def test_script_user_mistakes_are_one_line_exit_2(fake_workdirs, tiny_data_dir, tmp_path):
  """The issue's probes, each a script run: one `error:` line on stderr, exit 2, no
  traceback, within seconds (the empty split used to hang)."""
  fw = fake_workdirs
  eight = tmp_path / "eight"
  shutil.copytree(tiny_data_dir, eight)
  meta = json.load(open(eight / "dataset.json"))
  meta["classes"] = [f"c{i}" for i in range(8)]
  json.dump(meta, open(eight / "dataset.json", "w"))
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  d = tiny_data_dir
  empty = _empty_split_dir(tmp_path / "empty", tiny_data_dir)
  damaged, victim = _damaged_copy(tmp_path / "bad", tiny_data_dir, "truncated")
  tiny = "--config=" + os.path.join(REPO, "configs", "tiny.py")
  broken_json = tmp_path / "broken_json"
  shutil.copytree(tiny_data_dir, broken_json)
  (broken_json / "dataset.json").write_text('{"classes": [')
  probes = [
      (("finetune", "--config.train.bacth_size=4", "--workdir=w"),
       ["--config.train.bacth_size", "--config.train.batch_size"]),
      (("finetune", "--config=/nonexistent/cfg.py", "--workdir=w"), ["/nonexistent/cfg.py"]),
      (("pretrain", tiny, "--config.data.clip_len=0", f"--data_dir={d}",
        f"--workdir={tmp_path}/p"), ["--config.data.clip_len=0", "positive"]),
      (("pretrain", tiny, f"--data_dir={empty}", f"--workdir={tmp_path}/p2"),
       ["split 'train'", empty, "0 videos"]),
      (("finetune", f"--init_from={fw['pre']}", f"--data_dir={d}", f"--workdir={tmp_path}/f1"),
       ["--init_from", "is a pretraining workdir", "export"]),
      (("finetune", f"--init_from={fw['export']}/encoder.weights.h5", f"--data_dir={d}",
        f"--workdir={tmp_path}/f2"), ["is a file", fw["export"]]),
      (("export", f"--workdir={fw['ft']}"), ["is a finetuning workdir"]),
      (("evaluate", f"--workdir={fw['ft']}", f"--data_dir={eight}"), ["8 classes", "on 2"]),
      (("evaluate", f"--workdir={fw['pre']}", f"--data_dir={d}"), ["is a pretraining workdir"]),
      (("retrieval", "--model=random", "--arch=r3d_10", "--width_multiplier=0.125",
        "--clip_shape=8,32,32", "--num_clips=1", "--resize=43,32", f"--data_dir={damaged}"),
       [victim]),
      (("make_demo_data", f"--out_dir={a_file}/sub"), [str(a_file)]),   # not writable
      # held-out probes (not in the list)
      (("retrieval", "--model=random", "--topk=0,5", f"--data_dir={d}"), ["--topk=0,5"]),
      (("pretrain", tiny, f"--data_dir={d}", f"--workdir={a_file}"), ["not a directory"]),
      (("finetune", f"--data_dir={d}", f"--workdir={fw['export']}"), ["an encoder export"]),
      (("retrieval", f"--model={fw['pre']}", f"--data_dir={d}"),
       ["is a pretraining workdir", "export"]),
      (("evaluate", f"--workdir={fw['ft']}", f"--data_dir={broken_json}"),
       ["dataset.json is damaged"]),
  ]
  t0 = time.time()
  results = _run_all([args for args, _ in probes], str(tmp_path))
  for (args, needles), proc in zip(probes, results):
    _assert_one_line_error(proc, *needles)
  assert time.time() - t0 < 400
  # finetune refused on a pretraining workdir wrote nothing there
  assert sorted(os.listdir(fw["pre"])) == ["config.json"]
