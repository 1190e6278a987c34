"""from_torch against torchvision golden logits; name/shape errors; reading .pth (torch's zip
format, without torch), .safetensors and .npz; the import script."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from ctp_tf.models import build_backbone, from_torch, torch_import
from ctp_tf.models.torch_import import to_torch_state_dict

import golden_inputs   # tests/ is on the path under pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden")


@pytest.mark.parametrize("arch,seed", [("r3d_18", 1), ("r2plus1d_18", 2)])
def test_torchvision_logits_match_golden(arch, seed):
  g = np.load(os.path.join(GOLDEN, f"{arch}.npz"))
  names = [str(n) for n in g["names"]]
  template = to_torch_state_dict(build_backbone(arch, width_multiplier=0.125), arch)
  # Shapes of the full-width torchvision model, derived from the names the golden file lists.
  full = to_torch_state_dict(build_backbone(arch, bn_epsilon=1e-5, r2plus1d_mid_rule="block"),
                             arch)
  shapes = {k: v.shape for k, v in full.items()}
  shapes.update({"fc.weight": (g["logits"].shape[1], 512),
                 "fc.bias": g["logits"].shape[1:]})
  assert sorted(shapes) == sorted(names) and set(template) <= set(names)
  state = golden_inputs.seeded_weights(shapes, seed)
  model = from_torch(state, arch, "torchvision")
  clip = np.transpose(g["clip"], (0, 2, 3, 4, 1))          # NCTHW -> NTHWC
  logits = model.predict(clip, verbose=0)
  rel = np.linalg.norm(logits - g["logits"]) / np.linalg.norm(g["logits"])
  assert rel < 1e-4, rel


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_ctp_layout_round_trip_and_skips_head(arch):
  source = build_backbone(arch, "pretrain", bn_epsilon=1e-3, width_multiplier=1.0)
  state = to_torch_state_dict(source, arch, layout="ctp")
  assert "backbone.stem.conv.weight" in state or "backbone.stem.conv_s.weight" in state
  if arch == "r3d_18":
    assert state["backbone.layer2.0.conv1.conv.weight"].shape == (128, 64, 3, 3, 3)
    assert "backbone.layer2.0.downsample_bn.running_var" in state
  else:
    assert state["backbone.layer2.0.conv2.conv_s.weight"].shape[0] == 288   # own-width rule
  state["head.fc.weight"] = np.zeros((64, 12))                # pretext head: skipped
  state["backbone.layer1.0.bn1.num_batches_tracked"] = np.array(5)
  model = from_torch(state, arch, "ctp", preset="pretrain", input_shape=(8, 32, 32, 3))
  for w0, w1 in zip(source.get_weights(), model.get_weights()):
    np.testing.assert_array_equal(w0, w1)


def test_missing_extra_and_misshaped_tensors_are_named():
  arch = "r3d_18"
  state = to_torch_state_dict(build_backbone(arch, bn_epsilon=1e-5), arch)
  broken = dict(state)
  del broken["layer3.1.conv2.1.running_mean"]
  with pytest.raises(ValueError, match=r"layer3\.1\.conv2\.1\.running_mean"):
    from_torch(broken, arch)
  broken = dict(state, **{"layer5.0.conv1.0.weight": np.zeros(3)})
  with pytest.raises(ValueError, match=r"unexpected tensor 'layer5\.0\.conv1\.0\.weight'"):
    from_torch(broken, arch)
  broken = dict(state)
  broken["layer2.0.downsample.0.weight"] = np.zeros((128, 64, 1, 1, 3), np.float32)
  with pytest.raises(ValueError, match=r"layer2\.0\.downsample\.0\.weight.*shape"):
    from_torch(broken, arch)
  broken = dict(state, **{"fc.weight": np.zeros((5, 256), np.float32),
                          "fc.bias": np.zeros(5, np.float32)})
  with pytest.raises(ValueError, match="fc.weight"):
    from_torch(broken, arch)
  with pytest.raises(ValueError, match="layout"):
    from_torch(state, arch, layout="timm")


def write_safetensors(path, tensors, bf16=()):
  """Minimal safetensors writer (the format: u64 header length, JSON header, raw data)."""
  header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
  for name, a in tensors.items():
    if name in bf16:
      raw = (np.asarray(a, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
      dtype = "BF16"
    else:
      raw, dtype = np.asarray(a, "<f4").tobytes(), "F32"
    header[name] = {"dtype": dtype, "shape": list(np.shape(a)),
                    "data_offsets": [offset, offset + len(raw)]}
    chunks.append(raw)
    offset += len(raw)
  blob = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(blob)) + blob + b"".join(chunks))


def test_import_script_reads_safetensors_and_npz(tmp_path):
  arch = "r2plus1d_18"
  source = build_backbone(arch, bn_epsilon=1e-5, r2plus1d_mid_rule="block")
  state = to_torch_state_dict(source, arch)
  rng = np.random.default_rng(0)
  state["fc.weight"] = rng.normal(0, 0.01, (3, 512)).astype(np.float32)
  state["fc.bias"] = np.array([0.5, -1.0, 2.0], np.float32)   # exact in bfloat16
  st_path, npz_path = str(tmp_path / "w.safetensors"), str(tmp_path / "w.npz")
  write_safetensors(st_path, state, bf16={"fc.bias"})
  np.savez(npz_path, **state)
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  outputs = []
  for src in (st_path,):   # one subprocess run (each costs a TF start); npz read below
    out = src + ".weights.h5"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "import_torch_weights.py"),
                        f"--input={src}", f"--arch={arch}", f"--output={out}"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.load(open(out[:-len(".weights.h5")] + ".json"))
    assert meta["num_classes"] == 3 and meta["backbone"]["r2plus1d_mid_rule"] == "block"
    outputs.append(out)
  model = from_torch(state, arch)
  for out in outputs:
    again = from_torch(state, arch)
    for v in again.weights:
      v.assign(np.zeros(v.shape, v.dtype))
    again.load_weights(out)
    for a, b in zip(model.get_weights(), again.get_weights()):
      np.testing.assert_allclose(a, b, atol=1e-7)
  from_npz = torch_import.read_state_dict(npz_path)
  assert sorted(from_npz) == sorted(state)
  read = torch_import.read_safetensors(st_path)
  np.testing.assert_array_equal(read["fc.bias"], state["fc.bias"])
  np.testing.assert_array_equal(read["stem.0.weight"], state["stem.0.weight"])
  bad = tmp_path / "w.bad"
  bad.write_text("x")
  with pytest.raises(ValueError, match="expected .pth"):
    torch_import.read_state_dict(str(bad))


def _golden_arrays():
  with np.load(os.path.join(GOLDEN, "tiny_state_dict.npz")) as z:
    return {k: z[k] for k in z.files}


@pytest.mark.parametrize("name", ["tiny_state_dict.pth", "tiny_state_dict_wrapped.pth"])
def test_pth_checkpoint_read_without_torch(name):
  """A checkpoint torch 2.13 wrote (tools/make_torch_checkpoint.py), read tensor by tensor:
  dtypes kept (float32/16/64, int64/8, bool; bfloat16 widened exactly to float32), strided and
  offset views, shared storages, 0-d and empty tensors, BatchNorm's num_batches_tracked; the
  mmcv wrapper `{"state_dict", "meta"}` unwrapped."""
  want = _golden_arrays()
  got = torch_import.read_state_dict(os.path.join(GOLDEN, name))
  assert sorted(got) == sorted(want)
  for k, w in want.items():
    assert got[k].dtype == w.dtype and got[k].shape == w.shape, (k, got[k].dtype, got[k].shape)
    np.testing.assert_array_equal(got[k], w, err_msg=k)
  # Values the generator chose, so that a reader agreeing with a wrong npz would still fail.
  base = np.arange(24, dtype=np.float32).reshape(4, 6) / np.float32(7.0)
  np.testing.assert_array_equal(got["head.fc.weight_t"], base.T)
  np.testing.assert_array_equal(got["head.fc.every_other"], base[1:, ::2])
  np.testing.assert_array_equal(got["head.index"], [[-3, 2**40], [7, 0]])
  np.testing.assert_array_equal(got["head.flag"], [True, False, True])
  np.testing.assert_array_equal(got["head.int8"], [-128, 0, 127])
  assert got["head.scalar"].shape == () and float(got["head.scalar"]) == 2.5
  np.testing.assert_array_equal(got["head.fc.bf16"][:2], [0.5, -1.25])
  assert got["backbone.1.num_batches_tracked"].dtype == np.int64
  assert int(got["backbone.1.num_batches_tracked"]) == 1
  if "wrapped" in name:
    meta = torch_import.read_torch_checkpoint(os.path.join(GOLDEN, name))["meta"]
    assert meta == {"epoch": 3, "iter": 120, "note": "tiny", "lr": [0.1, 0.01], "shape": (1, 2)}


def test_pth_reader_refuses_objects_and_corrupt_files(tmp_path):
  # A pickled nn.Module would run foreign code: refused, naming the class.
  with pytest.raises(ValueError, match=r"refusing to load global torch\.nn\.modules\.linear"):
    torch_import.read_state_dict(os.path.join(GOLDEN, "tiny_state_dict_module.pth"))
  # A storage shorter than its tensors claim must not be read past its end.
  src = os.path.join(GOLDEN, "tiny_state_dict.pth")
  short = str(tmp_path / "short.pth")
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(short, "w") as zout:
    for info in zin.infolist():
      data = zin.read(info.filename)
      if info.filename.endswith("/data/0"):
        data = data[:len(data) // 2]
      zout.writestr(info.filename, data)
  with pytest.raises(ValueError, match="reaches element"):
    torch_import.read_state_dict(short)
  legacy = tmp_path / "legacy.pth"
  legacy.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.")
  with pytest.raises(ValueError, match="legacy"):
    torch_import.read_state_dict(str(legacy))
  with pytest.raises(FileNotFoundError):
    torch_import.read_state_dict(str(tmp_path / "missing.pth"))
  # The script reports such a file in one line with exit code 2, without a traceback.
  bad = str(tmp_path / "module.pth")
  shutil.copy(os.path.join(GOLDEN, "tiny_state_dict_module.pth"), bad)
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "import_torch_weights.py"),
                      f"--input={bad}", f"--output={tmp_path / 'o.weights.h5'}"],
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2, r.stderr[-2000:]
  err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(err) == 1 and "refusing to load global" in err[0] and "Traceback" not in r.stderr

