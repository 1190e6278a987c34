"""Converts PyTorch video ResNet weights to a Keras `.weights.h5`.

Reads `.pth`/`.pt` (needs torch installed), `.safetensors` (parsed here, no extra package) or
`.npz`. Writes `--output` (a `.weights.h5` for the model `ctp_tf.models.from_torch` builds)
and, beside it, `<name>.json` with the arguments that rebuild that model.

  python scripts/import_torch_weights.py --input=r3d_18-b3b3357e.pth --arch=r3d_18 \
      --layout=torchvision --output=r3d_18_kinetics.weights.h5
"""

import json
import os
import struct
import sys

from absl import app, flags

from ctp_tf import cli  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "PyTorch weights: .pth/.pt (torch), .safetensors or .npz.")
flags.DEFINE_string("output", None, "Output file, must end in .weights.h5.")
flags.DEFINE_enum("arch", "r3d_18", ["r3d_10", "r3d_18", "r3d_34", "r2plus1d_10",
                                     "r2plus1d_18", "r2plus1d_34"], "Network.")
flags.DEFINE_enum("layout", "torchvision", ["torchvision", "ctp"],
                  "Tensor names: torchvision's video models or the PyTorch CtP release.")
flags.DEFINE_enum("preset", "standard", ["standard", "pretrain"], "Backbone strides.")
flags.DEFINE_integer("backbone_stride", 8, "Spatial stride of the pretrain preset (8 or 16).")

_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                       "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "<u2"}


def read_safetensors(path):
  """{name: numpy array} from a .safetensors file: an 8-byte little-endian header length, a
  JSON header {name: {dtype, shape, data_offsets}}, then the raw little-endian buffer."""
  import numpy as np
  with open(path, "rb") as f:
    raw = f.read()
  if len(raw) < 8:
    raise ValueError(f"{path}: too short for a safetensors file")
  (n,) = struct.unpack("<Q", raw[:8])
  if n > len(raw) - 8:
    raise ValueError(f"{path}: header length {n} exceeds the file size")
  header = json.loads(raw[8:8 + n])
  data = memoryview(raw)[8 + n:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    dtype = info["dtype"]
    if dtype not in _SAFETENSORS_DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
    begin, end = info["data_offsets"]
    a = np.frombuffer(data[begin:end], dtype=_SAFETENSORS_DTYPES[dtype])
    if dtype == "BF16":   # bfloat16 is the top half of a float32
      a = (a.astype(np.uint32) << 16).view(np.float32)
    out[name] = a.reshape(info["shape"]).copy()
  return out


def read_state_dict(path):
  """{name: numpy array} from .pth/.pt, .safetensors or .npz; unwraps {"state_dict": ...}."""
  import numpy as np
  if not os.path.exists(path):
    raise FileNotFoundError(f"--input: no such file {path}")
  lower = path.lower()
  if lower.endswith(".safetensors"):
    state = read_safetensors(path)
  elif lower.endswith(".npz"):
    with np.load(path) as z:
      state = {k: z[k] for k in z.files}
  elif lower.endswith((".pth", ".pt", ".bin", ".ckpt")):
    try:
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      raise SystemExit(f"--input={path}: reading PyTorch pickles needs torch; convert to "
                       ".safetensors or .npz elsewhere, or install torch") from e
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
      obj = obj["state_dict"]
    state = {k: v.detach().float().numpy() for k, v in obj.items() if hasattr(v, "detach")}
  else:
    raise ValueError(f"--input={path}: expected .pth, .pt, .safetensors or .npz")
  return state


def main(argv):
  del argv
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError("--input and --output are required")
  if not FLAGS.output.endswith(".weights.h5"):
    raise app.UsageError(f"--output={FLAGS.output} must end in .weights.h5")
  from ctp_tf.models import from_torch  # pylint: disable=import-outside-toplevel
  state = read_state_dict(FLAGS.input)
  model = from_torch(state, FLAGS.arch, FLAGS.layout, preset=FLAGS.preset,
                     backbone_stride=FLAGS.backbone_stride)
  out_dir = os.path.dirname(os.path.abspath(FLAGS.output))
  os.makedirs(out_dir, exist_ok=True)
  tmp = FLAGS.output[:-len(".weights.h5")] + f".tmp-{os.getpid()}.weights.h5"
  model.save_weights(tmp)
  os.replace(tmp, FLAGS.output)
  backbone = getattr(model, "backbone", model)
  # Enough to rebuild the model without the PyTorch file:
  # VideoClassifier(ResNet3DBackbone.from_config(backbone), num_classes, dropout) or the
  # backbone alone, then `load_weights`.
  meta = {"from_torch": {"arch": FLAGS.arch, "layout": FLAGS.layout, "preset": FLAGS.preset,
                         "backbone_stride": FLAGS.backbone_stride},
          "source": os.path.abspath(FLAGS.input),
          "backbone": backbone.get_config(),
          "num_classes": getattr(model, "num_classes", None)}
  json_path = FLAGS.output[:-len(".weights.h5")] + ".json"
  with open(json_path + ".tmp", "w") as f:
    json.dump(meta, f, indent=2)
  os.replace(json_path + ".tmp", json_path)
  print(json.dumps({"weights": FLAGS.output, "config": json_path, "tensors": len(state),
                    "params": model.count_params()}))


if __name__ == "__main__":
  cli.run(main)
