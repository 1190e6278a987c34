"""Encoder export: SavedModel usable without ctp_tf, exact weights for finetuning, bad inputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ctp_tf import models
from ctp_tf.downstream import export

ARCH = "r3d_10"
WIDTH = 0.125
CLIP = (8, 32, 32)

# Runs in a fresh interpreter where importing ctp_tf fails, as on a machine without the
# package (keras stays installed: TensorFlow itself imports it for tf.keras).
_LOADER = r"""
import sys, importlib.abc

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] == "ctp_tf":
      raise ImportError(f"{name} is blocked in this test")
    return None

sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf
try:
  import ctp_tf
  raise SystemExit("ctp_tf importable")
except ImportError:
  pass
m = tf.saved_model.load(EXPORT)
fn = m.signatures["serving_default"]
data = np.load(DATA)
for n in (1, 3):
  out = fn(clips=tf.constant(data["clips"][:n]))
  np.testing.assert_allclose(out["features"].numpy(), data["features"][:n], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["retrieval_features"].numpy(), data["retrieval"][:n],
                             rtol=1e-4, atol=1e-5)
assert not [m for m in sys.modules if m.startswith("ctp_tf")]
print("LOADED_OK", out["features"].shape, out["retrieval_features"].shape)
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  import keras
  keras.utils.set_random_seed(1)
  backbone = models.build_backbone(ARCH, "pretrain", width_multiplier=WIDTH)
  # Non-trivial BN statistics so a restore that skipped them would be caught.
  rng = np.random.default_rng(0)
  for v in backbone.non_trainable_weights:
    v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
  d = str(tmp_path_factory.mktemp("export") / "enc")
  cfg = export.export_encoder(backbone, d, config={"model": {"arch": ARCH,
                                                             "width_multiplier": WIDTH}},
                              clip_shape=CLIP, source="test")
  return backbone, d, cfg


def test_export_layout_and_config(exported):
  _, d, cfg = exported
  assert set(os.listdir(d)) >= {"config.json", "encoder.weights.h5", "saved_model.pb",
                                "variables"}
  assert not [p for p in os.listdir(os.path.dirname(d)) if ".tmp-" in p]
  with open(os.path.join(d, "config.json")) as f:
    assert json.load(f) == cfg
  assert cfg["arch"] == ARCH and cfg["clip_shape"] == list(CLIP)
  assert cfg["num_features"] == int(512 * WIDTH)
  assert cfg["retrieval_features"] == 2 * 3 * 3 * int(512 * WIDTH)


def test_savedmodel_loads_without_ctp_tf_and_matches_keras(exported, tmp_path):
  backbone, d, _ = exported
  clips = np.random.default_rng(2).integers(0, 256, (3,) + CLIP + (3,), dtype=np.uint8)
  # The paper's downstream encoder: the same weights with standard strides.
  fx = models.FeatureExtractor(models.standard_backbone_like(backbone), clip_shape=CLIP)
  ref = fx(clips, training=False)
  data = str(tmp_path / "ref.npz")
  np.savez(data, clips=clips, features=np.asarray(ref["features"]),
           retrieval=np.asarray(ref["retrieval_features"]))
  code = f"EXPORT = {d!r}\nDATA = {data!r}\n" + _LOADER
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=env, cwd=str(tmp_path), timeout=120)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  assert "LOADED_OK" in proc.stdout


def test_stride8_checkpoint_exported_with_standard_strides(exported):
  backbone, d, _ = exported
  encoder, cfg = export.load_encoder(d, arch=ARCH, width_multiplier=WIDTH)
  # Pretraining backbone keeps stage 4 at stride 8; the export is the standard network.
  x = np.zeros((1,) + CLIP + (3,), np.uint8)
  assert tuple(backbone(x).shape[2:4]) == (4, 4)
  assert tuple(encoder(x).shape[2:4]) == (2, 2)
  # ... with exactly the same weights, BN statistics included.
  assert len(encoder.weights) == len(backbone.weights)
  for a, b in zip(encoder.weights, backbone.weights):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def test_export_of_ctp_model_uses_its_backbone(tmp_path):
  from ctp_tf import defaults
  cfg = defaults.ctp_model_config()
  cfg.arch, cfg.width_multiplier, cfg.hidden = ARCH, WIDTH, 16
  ctp = models.build_ctp_model(cfg, clip_shape=CLIP)
  d = str(tmp_path / "enc")
  os.makedirs(d)                      # an older export there is replaced
  open(os.path.join(d, "stale"), "w").close()
  export.export_encoder(ctp, d, config={"model": cfg.to_dict()}, clip_shape=CLIP)
  assert not os.path.exists(os.path.join(d, "stale"))
  encoder, _ = export.load_encoder(d)
  for a, b in zip(encoder.weights, ctp.backbone.weights):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_export_dirs_give_clear_errors(exported, tmp_path):
  _, d, _ = exported
  with pytest.raises(export.ExportError, match="does not exist"):
    export.load_encoder(str(tmp_path / "nowhere"))
  with pytest.raises(export.ExportError, match="holds a r3d_10 encoder, but r2plus1d_18"):
    export.load_encoder(d, arch="r2plus1d_18")
  with pytest.raises(export.ExportError, match="width_multiplier"):
    export.load_serving(d, width_multiplier=1.0)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(export.ExportError, match="config.json is missing"):
    export.load_encoder(str(empty))

  import shutil
  bad = tmp_path / "bad"
  shutil.copytree(d, bad)
  (bad / "config.json").write_text("{not json")
  with pytest.raises(export.ExportError, match="corrupt export: cannot parse"):
    export.load_encoder(str(bad))
  shutil.copy(os.path.join(d, "config.json"), bad / "config.json")
  with open(bad / "encoder.weights.h5", "r+b") as f:   # truncated weights
    f.truncate(200)
  with pytest.raises(export.ExportError, match="corrupt export: cannot restore"):
    export.load_encoder(str(bad))
  os.remove(bad / "saved_model.pb")
  with pytest.raises(export.ExportError, match="saved_model.pb is missing"):
    export.load_serving(str(bad))


# A client's malformed serving inputs, each sent in its own process (a crash must show as an
# exit status, not kill pytest): (name, shape, dtype, expect) with expect "error" (an
# InvalidArgumentError naming the expected shape) or "empty" (0 rows of features).
_MALFORMED = [
    ("no_batch_dim", (8, 32, 32, 3), "uint8", "error"),
    ("rank3", (32, 32, 3), "uint8", "error"),
    ("scalar", (), "uint8", "error"),
    ("zero_frames", (1, 0, 32, 32, 3), "uint8", "error"),
    ("one_frame", (1, 1, 32, 32, 3), "uint8", "error"),
    ("too_many_frames", (1, 16, 32, 32, 3), "uint8", "error"),
    ("wrong_size", (1, 8, 48, 32, 3), "uint8", "error"),
    ("grey", (1, 8, 32, 32, 1), "uint8", "error"),
    ("rank6", (1, 1, 8, 32, 32, 3), "uint8", "error"),
    ("float", (1, 8, 32, 32, 3), "float32", "error"),
    ("batch0", (0, 8, 32, 32, 3), "uint8", "empty"),
]

_CLIENT = r"""
import sys
import numpy as np
import tensorflow as tf
export_dir, via, cases = sys.argv[1], sys.argv[2], eval(sys.argv[3])
if via == "raw":
  fn = tf.saved_model.load(export_dir).signatures["serving_default"]
  call = lambda c: fn(clips=tf.constant(c))
else:
  from ctp_tf.downstream import export
  call, _ = export.load_serving(export_dir)
for name, shape, dtype, _ in cases:
  print("CASE", name, flush=True)   # the last CASE line names the input of a crash
  try:
    out = call(np.zeros(shape, dtype))
    print("RESULT", name, tuple(out["features"].shape), tuple(out["retrieval_features"].shape))
  except tf.errors.InvalidArgumentError as e:
    print("INVALID", name, " ".join(str(e.message).split()))
  sys.stdout.flush()
print("ALL_DONE")
"""


def _serve_cases(export_dir, via, cases):
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3",
             TF_ENABLE_ONEDNN_OPTS="1")   # the crashes needed oneDNN
  proc = subprocess.run([sys.executable, "-c", _CLIENT, export_dir, via, repr(cases)],
                        capture_output=True, text=True, env=env, timeout=240)
  crashed_at = [l for l in proc.stdout.splitlines() if l.startswith("CASE")][-1:]
  assert proc.returncode == 0 and "ALL_DONE" in proc.stdout, \
      (via, proc.returncode, crashed_at, proc.stderr[-1500:])
  return {l.split()[1]: l for l in proc.stdout.splitlines()
          if l.startswith(("RESULT", "INVALID"))}


@pytest.mark.parametrize("via", ["raw", "load_serving"])
def test_serving_rejects_malformed_clips_without_crashing(exported, via):
  """Each malformed input in a subprocess: the SavedModel as any client loads it (`raw`), and
  through export.load_serving; the process must survive and answer each one."""
  _, d, cfg = exported
  results = _serve_cases(d, via, _MALFORMED)
  for name, _, dtype, expect in _MALFORMED:
    line = results[name]
    if expect == "empty":
      assert line == f"RESULT {name} (0, {cfg['num_features']}) (0, " \
                     f"{cfg['retrieval_features']})", line
    elif dtype == "uint8":
      assert line.startswith("INVALID") and "clips must be uint8 [N, 8, 32, 32, 3]" in line, line
    else:
      assert line.startswith("INVALID") and "uint8" in line and "float" in line, line
