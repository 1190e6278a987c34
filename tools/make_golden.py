"""Writes tests/golden/*.npz: PyTorch/torchvision outputs that the Keras code must reproduce.

Run once in a separate venv with torch (the test suite never needs torch):
  python -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install numpy torch==2.14.1 torchvision==0.29.1
  /tmp/torchvenv/bin/python tools/make_golden.py

Weights are not stored (33M parameters): `seeded_weights` makes them from a numpy seed, and
tests/test_torch_import.py calls the same function (tests/golden_inputs.py), so only inputs and
outputs are committed.
"""

import importlib.util
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "golden")
# The seeded inputs live beside the tests that read the golden files (tests/ is no package).
_spec = importlib.util.spec_from_file_location(
    "golden_inputs", os.path.join(ROOT, "tests", "golden_inputs.py"))
golden_inputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_inputs)
CLIP_SHAPE, NUM_CLASSES, ROI_SETTINGS = (golden_inputs.CLIP_SHAPE, golden_inputs.NUM_CLASSES,
                                         golden_inputs.ROI_SETTINGS)
seeded_weights, roi_cases = golden_inputs.seeded_weights, golden_inputs.roi_cases


def main():
  import torch
  import torchvision

  torch.set_num_threads(2)
  os.makedirs(OUT_DIR, exist_ok=True)

  features, boxes = roi_cases()
  roi = {"features": features, "boxes": boxes}
  for i, (out, scale, s, aligned) in enumerate(ROI_SETTINGS):
    y = torchvision.ops.roi_align(torch.from_numpy(features), torch.from_numpy(boxes), out,
                                  spatial_scale=scale, sampling_ratio=s, aligned=aligned)
    roi[f"out{i}"] = y.numpy()
  np.savez_compressed(os.path.join(OUT_DIR, "roi_align.npz"), **roi)

  for arch, seed in (("r3d_18", 1), ("r2plus1d_18", 2)):
    model = getattr(torchvision.models.video, arch)(num_classes=NUM_CLASSES).eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    weights = seeded_weights(shapes, seed)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    clip = np.random.default_rng(seed + 100).normal(size=CLIP_SHAPE).astype(np.float32)
    with torch.no_grad():
      logits = model(torch.from_numpy(clip)).numpy()
    np.savez_compressed(os.path.join(OUT_DIR, f"{arch}.npz"), clip=clip, logits=logits,
                        names=np.array(sorted(shapes)),
                        versions=np.array([torch.__version__, torchvision.__version__]))
    print(arch, "logits", logits[0, :4], "params", sum(int(np.prod(s)) for s in shapes.values()))


if __name__ == "__main__":
  main()
