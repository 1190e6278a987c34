"""Our Keras models against PyTorch/torchvision on one device: same numbers, train-step speed.

Made for the GPU machine (JAX and PyTorch, no TensorFlow), runs anywhere both are installed:
  KERAS_BACKEND=jax python benchmarks/gpu_compare.py --output=gpu_compare.json
  KERAS_BACKEND=jax python benchmarks/gpu_compare.py --batch=2 --frames=8 --size=32 \
      --width=0.25 --steps=2 --warmup=1            # a CPU smoke run of the same code

1. `roi_align`: `ctp_tf.layers.ROIAlign` against `torchvision.ops.roi_align` on the same
   device, random boxes plus border cases (`tools/make_golden.roi_cases`); max abs error.
2. `logits`: torchvision `r3d_18` / `r2plus1d_18` with numpy-seeded weights
   (`tools/make_golden.seeded_weights`) converted by `ctp_tf.models.from_torch`, eval mode,
   float32 with TF32 off on both sides; relative error of the logits.
3. `train_step`: clips/s and peak device memory of an SGD train step at [B, 16, 112, 112]:
   Keras `model.fit` against a plain PyTorch loop, for the classifier (r3d_18, r2plus1d_18) and
   the CtP model (r3d_18 at stride 8 + temporal squeeze + ROIAlign + FC head), in float32 and
   bfloat16 mixed precision. Each run is its own process so that peak memory is its own.
   The PyTorch side gets `cudnn.benchmark` (as mmcv-based training scripts set it).

Prints one JSON line per result, a JSON summary, then a table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# JAX takes 75% of GPU memory at start by default; PyTorch shares the process in the checks.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# train_step.py sits beside this script (its folder is sys.path[0] when run as a script).


def _make_golden():
  """tools/make_golden.py (the golden cases' definitions), loaded by its path."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("make_golden",
                                                os.path.join(ROOT, "tools", "make_golden.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DEFAULT_RUNS = ("classifier:r3d_18:float32,classifier:r3d_18:bfloat16,"
                "classifier:r2plus1d_18:float32,ctp:r3d_18:float32,ctp:r3d_18:bfloat16")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", default=DEFAULT_RUNS, help="comma list of task:arch:precision")
  p.add_argument("--frameworks", default="torch,keras")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--size", type=int, default=112)
  p.add_argument("--width", type=float, default=1.0, help="Keras width multiplier (1: torchvision)")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--checks", default="roi_align,logits", help="'' to skip the number checks")
  p.add_argument("--run_timeout", type=int, default=240, help="seconds per train-step process")
  p.add_argument("--worker", default="", help=argparse.SUPPRESS)
  p.add_argument("--output", default="")
  return p.parse_args(argv)


def torch_device():
  import torch
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name():
  import torch
  return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- number checks (one process)

def check_roi_align():
  import keras
  import numpy as np
  import torch
  import torchvision
  golden = _make_golden()
  ROI_SETTINGS, roi_cases = golden.ROI_SETTINGS, golden.roi_cases  # noqa: N806
  from ctp_tf.layers import ROIAlign
  dev = torch_device()
  results = []
  for seed in (0, 1, 2):
    features, boxes = roi_cases(seed)
    for out, scale, s, aligned in ROI_SETTINGS:
      ref = torchvision.ops.roi_align(torch.from_numpy(features).to(dev),
                                      torch.from_numpy(boxes).to(dev), out, spatial_scale=scale,
                                      sampling_ratio=s, aligned=aligned).cpu().numpy()
      got = keras.ops.convert_to_numpy(
          ROIAlign(out, scale, s, aligned)(np.transpose(features, (0, 2, 3, 1)), boxes))
      err = float(np.max(np.abs(np.transpose(got, (0, 3, 1, 2)) - ref)))
      results.append(err)
  return {"check": "roi_align", "cases": len(results), "max_abs_err": max(results),
          "device": device_name(), "backend": keras.backend.backend()}


def check_logits(arch, seed):
  import keras
  import numpy as np
  import torch
  import torchvision
  seeded_weights = _make_golden().seeded_weights
  from ctp_tf.models import from_torch
  dev = torch_device()
  tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cuda.matmul.allow_tf32 = False
  model = getattr(torchvision.models.video, arch)(num_classes=101).eval().to(dev)
  shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}
  weights = seeded_weights(shapes, seed)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
  clip = np.random.default_rng(seed + 100).normal(size=(2, 3, 16, 112, 112)).astype(np.float32)
  with torch.no_grad():
    ref = model(torch.from_numpy(clip).to(dev)).cpu().numpy()
  kmodel = from_torch(weights, arch, "torchvision")
  x = np.transpose(clip, (0, 2, 3, 4, 1))
  if keras.backend.backend() == "jax":
    import jax
    with jax.default_matmul_precision("highest"):
      got = keras.ops.convert_to_numpy(kmodel(x, training=False))
  else:
    got = keras.ops.convert_to_numpy(kmodel(x, training=False))
  rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
  torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
  return {"check": "logits", "arch": arch, "rel_err": rel, "device": device_name(),
          "backend": keras.backend.backend()}


# ---------------------------------------------------------------- train steps (one per process)

def torch_ctp_model(arch, frames, num_boxes):
  """The CtP network in PyTorch: torchvision trunk with stage 4 at spatial stride 1 (stride 8
  overall, time 16 -> 2), temporal squeeze conv, roi_align on frame-0 boxes, FC-ReLU-FC."""
  import torch
  import torchvision
  from torch import nn
  trunk = getattr(torchvision.models.video, arch)()
  for m in trunk.layer4[0].modules():
    if isinstance(m, nn.Conv3d) and m.stride != (1, 1, 1):
      m.stride = (m.stride[0], 1, 1)

  class CtP(nn.Module):
    def __init__(self):
      super().__init__()
      self.trunk = nn.Sequential(trunk.stem, trunk.layer1, trunk.layer2, trunk.layer3,
                                 trunk.layer4)
      self.squeeze = nn.Conv3d(512, 512, (frames // 8, 1, 1))
      self.fc1 = nn.Linear(512 * 25, 512)
      self.fc2 = nn.Linear(512, frames * 4)

    def forward(self, clip, boxes):
      f = torch.relu(self.squeeze(self.trunk(clip)))[:, :, 0]
      b, n = boxes.shape[:2]
      index = torch.arange(b, device=boxes.device, dtype=boxes.dtype).repeat_interleave(n)
      rois = torch.cat([index[:, None], boxes[:, :, 0].reshape(-1, 4)], 1)
      r = torchvision.ops.roi_align(f, rois.to(f.dtype), 5, 1 / 8, 2, True)
      return self.fc2(torch.relu(self.fc1(r.flatten(1))))

  return CtP()


def run_torch(task, arch, precision, args):
  import torch
  import torch.nn.functional as F
  torch.manual_seed(0)
  dev = torch_device()
  torch.backends.cudnn.benchmark = True
  from train_step import make_batch
  clip, labels, boxes = make_batch(args.batch, args.frames, args.size)
  if task == "classifier":
    model = getattr(__import__("torchvision").models.video, arch)(num_classes=101)
  else:
    model = torch_ctp_model(arch, args.frames, 3)
  model = model.to(dev).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1, 1)
  std = torch.tensor(STD, device=dev).view(1, 3, 1, 1, 1)
  host_clip = torch.from_numpy(clip)
  if dev.type == "cuda":
    host_clip = host_clip.pin_memory()
  y = torch.from_numpy(labels).long().to(dev)
  bx = torch.from_numpy(boxes).to(dev)
  target = torch.zeros(args.batch * 3, args.frames * 4, device=dev)

  def step():
    x = host_clip.to(dev, non_blocking=True).permute(0, 4, 1, 2, 3).float()
    x = (x / 255.0 - mean) / std
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
      if task == "classifier":
        loss = F.cross_entropy(model(x), y)
      else:
        loss = F.smooth_l1_loss(model(x, bx).float(), target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  def sync():
    if dev.type == "cuda":
      torch.cuda.synchronize()

  for _ in range(args.warmup):
    step()
  sync()
  if dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
  start = time.perf_counter()
  for _ in range(args.steps):
    loss = step()
  sync()
  elapsed = time.perf_counter() - start
  return {"framework": "torch", "version": torch.__version__, "loss": float(loss),
          "step_s": elapsed / args.steps, "clips_per_s": args.batch * args.steps / elapsed,
          "device_peak_mb": (torch.cuda.max_memory_allocated() / 2**20
                             if dev.type == "cuda" else None),
          "params": sum(p.numel() for p in model.parameters())}


def run_keras(task, arch, precision, args):
  import keras
  from train_step import device_peak_bytes, make_task
  keras.utils.set_random_seed(0)
  if precision == "bfloat16":
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
  # "block": torchvision's R(2+1)D mid channels, so both sides do the same work.
  model, batch, loss = make_task(task, arch, args, r2plus1d_mid_rule="block")
  batch = batch if isinstance(batch, tuple) else (batch,)
  model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=1e-4),
                loss=loss)

  def data():
    while True:
      yield batch

  model.fit(data(), epochs=1, steps_per_epoch=args.warmup, verbose=0)
  start = time.perf_counter()
  history = model.fit(data(), epochs=1, steps_per_epoch=args.steps, verbose=0)
  elapsed = time.perf_counter() - start
  peak = device_peak_bytes()
  peak = peak / 2**20 if peak else None
  return {"framework": "keras-" + keras.backend.backend(), "version": keras.__version__,
          "loss": float(history.history["loss"][-1]),
          "step_s": elapsed / args.steps, "clips_per_s": args.batch * args.steps / elapsed,
          "device_peak_mb": peak, "params": model.count_params()}


def worker(spec, args):
  framework, task, arch, precision = spec.split(":")
  fn = run_torch if framework == "torch" else run_keras
  r = fn(task, arch, precision, args)
  r.update({"task": task, "arch": arch, "precision": precision, "batch": args.batch,
            "clip": [args.frames, args.size, args.size]})
  for k, digits in (("step_s", 4), ("clips_per_s", 3), ("device_peak_mb", 1)):
    if isinstance(r.get(k), float):
      r[k] = round(r[k], digits)
  print("RESULT " + json.dumps(r), flush=True)


def main(argv=None):
  args = parse_args(argv)
  if args.worker:
    worker(args.worker, args)
    return None
  results = {"device": None, "checks": [], "train_step": []}
  checks = [c for c in args.checks.split(",") if c]
  if checks:
    results["device"] = device_name()
    if "roi_align" in checks:
      results["checks"].append(check_roi_align())
      print(json.dumps(results["checks"][-1]), flush=True)
    if "logits" in checks:
      for arch, seed in (("r3d_18", 1), ("r2plus1d_18", 2)):
        results["checks"].append(check_logits(arch, seed))
        print(json.dumps(results["checks"][-1]), flush=True)
  passthrough = [f"--{k}={getattr(args, k)}" for k in
                 ("batch", "frames", "size", "width", "steps", "warmup")]
  for run in args.runs.split(","):
    for framework in args.frameworks.split(","):
      spec = f"{framework}:{run}"
      cmd = [sys.executable, os.path.abspath(__file__), f"--worker={spec}"] + passthrough
      start = time.perf_counter()
      try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.run_timeout)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        r = (json.loads(lines[-1][7:]) if lines else
             {"spec": spec, "error": (proc.stderr or proc.stdout)[-1500:]})
      except subprocess.TimeoutExpired:
        r = {"spec": spec, "error": f"timed out after {args.run_timeout} s"}
      r["process_s"] = round(time.perf_counter() - start, 1)
      results["train_step"].append(r)
      print(json.dumps(r), flush=True)
      if args.output:   # after every run, so a cut-off call still leaves what it measured
        with open(args.output, "w") as f:
          json.dump(results, f, indent=1)
  print(json.dumps(results, indent=1))
  print(f"\n{'run':44s} {'clips/s':>8s} {'step ms':>8s} {'peak MiB':>9s}")
  for r in results["train_step"]:
    name = r.get("spec") or f"{r['framework']}:{r['task']}:{r['arch']}:{r['precision']}"
    if "error" in r:
      print(f"{name:44s} error: {r['error'].splitlines()[-1] if r['error'] else ''}")
    else:
      peak = f"{r['device_peak_mb']:.0f}" if r.get("device_peak_mb") else "-"
      print(f"{name:44s} {r['clips_per_s']:8.3g} {1000 * r['step_s']:8.1f} {peak:>9s}")
  return results


if __name__ == "__main__":
  main()
