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
