"""Converts PyTorch video ResNet weights to a Keras `.weights.h5`.

Reads `.pth`/`.pt` (torch's zip checkpoint format), `.safetensors` or `.npz`, none of which
needs torch (`ctp_tf.models.torch_import.read_state_dict`). Writes `--output` (a `.weights.h5`
for the model `ctp_tf.models.from_torch` builds) and, beside it, `<name>.json` with the
arguments that rebuild that model.

  python scripts/import_torch_weights.py --input=r3d_18-b3b3357e.pth --arch=r3d_18 \
      --layout=torchvision --output=r3d_18_kinetics.weights.h5
"""

import json
import os
import sys

from absl import app, flags

from ctp_tf import cli, defaults


FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "PyTorch weights: .pth/.pt, .safetensors or .npz.")
flags.DEFINE_string("output", None, "Output file, must end in .weights.h5.")
flags.DEFINE_enum("arch", "r3d_18", ["r3d_10", "r3d_18", "r3d_34", "r2plus1d_10",
                                     "r2plus1d_18", "r2plus1d_34"], "Network.")
flags.DEFINE_enum("layout", "torchvision", ["torchvision", "ctp"],
                  "Tensor names: torchvision's video models or the PyTorch CtP release.")
flags.DEFINE_enum("preset", "standard", ["standard", "pretrain"], "Backbone strides.")
flags.DEFINE_integer("backbone_stride", defaults.BACKBONE_STRIDE,
                     "Spatial stride of the pretrain preset (8 or 16).")


def main(argv):
  del argv
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError("--input and --output are required")
  if not FLAGS.output.endswith(".weights.h5"):
    raise app.UsageError(f"--output={FLAGS.output} must end in .weights.h5")
  from ctp_tf.models import torch_import  # pylint: disable=import-outside-toplevel
  try:
    state = torch_import.read_state_dict(FLAGS.input)
    model = torch_import.from_torch(state, FLAGS.arch, FLAGS.layout, preset=FLAGS.preset,
                                    backbone_stride=FLAGS.backbone_stride)
  except (OSError, ValueError) as e:   # a user mistake: one line, exit code 2
    sys.stderr.write(f"error: --input={FLAGS.input}: {e}\n")
    sys.exit(2)
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
