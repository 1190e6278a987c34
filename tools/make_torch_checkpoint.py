"""Writes tests/golden/tiny_state_dict*.pth: small checkpoints saved by real torch, plus the
arrays they hold (tests/golden/tiny_state_dict.npz), for the torch-free `.pth` reader
(`ctp_tf.models.torch_import.read_torch_checkpoint`).

Run once in a separate venv with torch (the test suite never needs torch):
  python -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
  /tmp/torchvenv/bin/python tools/make_torch_checkpoint.py

The state dict covers what real checkpoints hold: float32 conv / BatchNorm tensors (a real
`nn.Conv3d` + `nn.BatchNorm3d`, so `num_batches_tracked` is an int64 scalar), float16,
bfloat16, int64, bool, a 0-d tensor, an empty tensor, a non-contiguous transposed view, a
strided slice with a storage offset, and two tensors sharing one storage. Files:
- `tiny_state_dict.pth`: the bare state dict (`torch.save(sd)`).
- `tiny_state_dict_wrapped.pth`: mmcv's layout, `{"state_dict": sd, "meta": {...}}`.
- `tiny_state_dict_module.pth`: a whole pickled `nn.Module`, which a safe reader must refuse.
- `tiny_state_dict.npz`: every tensor as numpy (bfloat16 as float32, its exact value).
"""

import collections
import os

import numpy as np
import torch

OUT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "tests", "golden")


def state_dict():
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, (1, 3, 3), bias=False),
                            torch.nn.BatchNorm3d(4))
  net.train()
  net(torch.randn(2, 3, 2, 5, 5))          # updates running stats and num_batches_tracked
  sd = collections.OrderedDict((f"backbone.{k}", v) for k, v in net.state_dict().items())
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7.0
  sd["head.fc.weight_t"] = base.t()                             # non-contiguous view
  sd["head.fc.every_other"] = base[1:, ::2]                     # offset + strides, shares base
  sd["head.fc.half"] = (torch.randn(3, 5) * 10).half()
  sd["head.fc.bf16"] = torch.tensor([0.5, -1.25, 3.0e38, 1e-3]).bfloat16()
  sd["head.index"] = torch.tensor([[-3, 2**40], [7, 0]], dtype=torch.int64)
  sd["head.flag"] = torch.tensor([True, False, True])
  sd["head.scalar"] = torch.tensor(2.5, dtype=torch.float64)
  sd["head.empty"] = torch.zeros(0, 3)
  sd["head.int8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
  return sd


def to_numpy(t):
  if t.dtype == torch.bfloat16:
    return t.float().numpy()
  return t.contiguous().numpy()


def main():
  os.makedirs(OUT_DIR, exist_ok=True)
  sd = state_dict()
  assert not sd["head.fc.weight_t"].is_contiguous()
  assert sd["head.fc.every_other"].storage_offset() > 0
  torch.save(sd, os.path.join(OUT_DIR, "tiny_state_dict.pth"))
  torch.save({"state_dict": sd, "meta": {"epoch": 3, "iter": 120, "note": "tiny",
                                         "lr": [0.1, 0.01], "shape": (1, 2)}},
             os.path.join(OUT_DIR, "tiny_state_dict_wrapped.pth"))
  torch.save(torch.nn.Linear(2, 1), os.path.join(OUT_DIR, "tiny_state_dict_module.pth"))
  np.savez(os.path.join(OUT_DIR, "tiny_state_dict.npz"),
           **{k: to_numpy(v) for k, v in sd.items()})
  for name in sorted(os.listdir(OUT_DIR)):
    if name.startswith("tiny_state_dict"):
      print(name, os.path.getsize(os.path.join(OUT_DIR, name)))


if __name__ == "__main__":
  main()
