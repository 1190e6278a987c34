"""Benchmark scripts that no other test runs: they must keep working (speed is not asserted)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_compare_keras_side_runs_without_torch():
  """The Keras half of benchmarks/gpu_compare.py (the GPU machine runs both halves); the
  PyTorch half and the number checks need torch, which the suite never installs."""
  out = os.path.join(REPO, "benchmarks", "gpu_compare.py")
  proc = subprocess.run(
      [sys.executable, out, "--frameworks=keras", "--checks=", "--runs=ctp:r3d_18:float32",
       "--batch=2", "--frames=8", "--size=32", "--width=0.125", "--steps=1", "--warmup=1"],
      capture_output=True, text=True, cwd=REPO, timeout=300,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{") and l.endswith("}")]
  result = json.loads(lines[-1])
  assert "error" not in result, result.get("error")
  assert result["task"] == "ctp" and result["clip"] == [8, 32, 32]
  assert result["clips_per_s"] > 0 and result["params"] > 0
  assert result["loss"] == result["loss"]   # not NaN


def test_pretrain_pipeline_benchmark_runs_with_floor(tmp_path):
  """benchmarks/pretrain_pipeline.py end to end at toy size: the full pipeline on one core
  in both synthesis placements (camera-pan frames) and the JPEG-decode floor, with its JSON
  fields."""
  script = os.path.join(REPO, "benchmarks", "pretrain_pipeline.py")
  proc = subprocess.run(
      [sys.executable, script, "--videos=4", "--frames=20", "--stored=96x72", "--threads=1",
       "--stages=jpeg_floor", "--batch_size=2", "--batches=1", "--warmup=1",
       f"--work_dir={tmp_path}"],
      capture_output=True, text=True, cwd=REPO, timeout=300,
      env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout[proc.stdout.index("{"):])
  full, accel, floor = result["runs"]
  assert result["frames_kind"] == "camera"
  assert (full["stage"], full["cores"]) == ("full", 1) and full["clips_per_cpu_s"] > 0
  assert full["placement"] == "input" and accel["placement"] == "accelerator"
  assert (full["batches_made_for"], accel["batches_made_for"]) == ("input", "accelerator")
  assert accel["stage"] == "full" and accel["cpu_ms_per_clip"] > 0
  assert floor["stage"] == "jpeg_floor" and floor["frames"] == 16
  assert all(floor[f"decode_ms_ratio{r}"] > 0 for r in (1, 2, 4, 8))


def test_numpy_pipeline_does_the_same_work(tmp_path):
  """The release-style numpy/OpenCV baseline (benchmarks/numpy_pipeline.py) makes what ours
  makes: a normalised 16x112x112 clip with 3 box trajectories inside the frame. OpenCV comes
  with the test extra (`pip install -e ".[test]"`)."""
  import cv2  # noqa: F401  (a missing test dependency fails here, it does not skip)
  import numpy as np
  from conftest import load_repo_module
  numpy_pipeline = load_repo_module("benchmarks/numpy_pipeline.py")
  import tensorflow as tf
  from ctp_tf.data import shards
  rng = np.random.default_rng(0)
  records = []
  for v in range(2):
    jpegs = [tf.io.encode_jpeg(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).numpy()
             for _ in range(20)]
    records.append(shards.make_sequence_example(
        jpegs, media_id=f"v{v}", label_index=0, label_string="c", height=72, width=96,
        frame_rate=25.0, index=v).SerializeToString())
  shards.write_tfrecord_atomic(str(tmp_path / shards.shard_name("train", 0, 1)), records)
  zips = numpy_pipeline.shards_to_zips(str(tmp_path))
  assert len(zips) == 2 and all(n == 20 for _, n in zips)
  rng = np.random.default_rng(0)
  for _ in range(5):
    clip, trajs = numpy_pipeline.sample(*zips[0], rng)
    assert clip.shape == (3, 16, 112, 112) and clip.dtype == np.float32
    assert np.isfinite(clip).all() and -3 < clip.mean() < 3
    assert len(trajs) == 3
    for boxes in trajs:
      assert boxes.shape == (16, 4) and boxes.min() >= 0 and boxes.max() <= 112
      assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def _fake_release(root):
  """A stand-in microsoft/CtP tree with the release's import structure (relative imports of
  BaseTransform, dynamic_utils and the TRANSFORMS registry): its PatchMask darkens every frame
  and records that it ran, so the benchmark's loader and timing loop are tested without the
  release itself (which the project does not ship)."""
  files = {
      "pyvrl/datasets/transforms/base_transform.py":
          "class BaseTransform:\n"
          "    def apply_image(self, data, transform_param=None):\n"
          "        return self._apply_image(data, self.get_transform_param(data))\n",
      "pyvrl/datasets/transforms/dynamic_utils.py":
          "def sample_key_frames(n, p):\n    return [0, n - 1]\n"
          "def extend_key_frame_to_all(v, k, mode='linear'):\n    return v\n",
      "pyvrl/models/pretraining/ctp/ctp_transforms.py":
          "import cv2\n"
          "from ....datasets import BaseTransform\n"
          "from ....datasets.transforms.dynamic_utils import sample_key_frames\n"
          "from ....builder import TRANSFORMS\n"
          "CALLS = []\n"
          "@TRANSFORMS.register_module()\n"
          "class PatchMask(BaseTransform):\n"
          "    def __init__(self, region_sampler, key_frame_probs, loc_velocity, size_velocity,\n"
          "                 label_prob):\n"
          "        assert region_sampler['num_rois'] == 3\n"
          "    def get_transform_param(self, data):\n"
          "        return sample_key_frames(len(data), None)\n"
          "    def _apply_image(self, data, param):\n"
          "        CALLS.append(len(data))\n"
          "        return [cv2.resize(d // 2, (d.shape[1], d.shape[0])) for d in data]\n",
  }
  for path, text in files.items():
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
      f.write(text)
  return str(root)


def test_synthesis_speed_benchmark_times_ours_and_the_release_loader(tmp_path):
  """benchmarks/synthesis_speed.py at toy size: ours (the tf.data map of
  synthesize_trajectories) and a stand-in release tree through the release loader, alternated,
  one core each; JSON with per-round clips per CPU-second and the ratio. A bad --release path
  is one line on stderr and exit code 2."""
  script = os.path.join(REPO, "benchmarks", "synthesis_speed.py")
  release = _fake_release(tmp_path / "ctp")
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
  core = sorted(os.sched_getaffinity(0))[0]
  proc = subprocess.run(
      [sys.executable, script, f"--release={release}", "--rounds=1", "--clips=32",
       "--distinct=2", f"--core={core}"],
      capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert len(result["ctp_tf"]) == 1 and result["ctp_tf"][0] > 0
  assert len(result["release"]) == 1 and result["release"][0] > 0
  assert result["ratio"] == round(result["ctp_tf"][0] / result["release"][0], 3)
  bad = subprocess.run([sys.executable, script, f"--release={tmp_path}/nothing"],
                       capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
