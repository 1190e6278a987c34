"""PyTorch weights -> Keras models: torchvision `r3d_18` / `r2plus1d_18` and the CtP release.

`state_dict` maps PyTorch names to numpy arrays (no torch needed here). Two layouts:

* `"torchvision"`: `torchvision.models.video.r3d_18` / `r2plus1d_18` names (`stem.0`,
  `layer1.0.conv1.0.weight`, R(2+1)D `conv1.0.0/1/3`, `downsample.0/1`, optional `fc`).
  BatchNorm eps 1e-5; the R(2+1)D mid width of both convs of a block comes from the block's
  input width.
* `"ctp"`: the PyTorch CtP release's backbone (`backbone.stem.conv.weight`,
  `backbone.layer1.0.conv1.conv.weight`, `bn1`, `downsample.conv` / `downsample_bn`; R(2+1)D
  `conv_s` / `bn_s` / `conv_t`). BatchNorm eps 1e-3; each (2+1)D conv's mid width comes from
  its own input width. Tensors outside `backbone.` (the pretext head) are skipped.

Any missing, unexpected or mis-shaped tensor raises a ValueError naming it.
"""

import logging

import numpy as np

from ctp_tf.models.resnet3d import ARCHS, STAGE_BLOCKS, build_backbone

_BN = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
       ("running_var", "moving_variance"))
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def _torchvision_names(block_type, depth):
  """{keras layer name: (kind, torch prefix)} for torchvision's video ResNets."""
  names = {}
  if block_type == "r3d":
    names.update(stem_conv=("conv", "stem.0"), stem_bn=("bn", "stem.1"))
  else:
    names.update(stem_conv_s=("conv", "stem.0"), stem_bn_s=("bn", "stem.1"),
                 stem_conv_t=("conv", "stem.3"), stem_bn_t=("bn", "stem.4"))
  for stage, blocks in enumerate(STAGE_BLOCKS[depth], start=1):
    for block in range(blocks):
      k, t = f"stage{stage}_block{block + 1}", f"layer{stage}.{block}"
      for c in (1, 2):
        if block_type == "r3d":
          names[f"{k}_conv{c}"] = ("conv", f"{t}.conv{c}.0")
        else:
          names[f"{k}_conv{c}_s"] = ("conv", f"{t}.conv{c}.0.0")
          names[f"{k}_conv{c}_bn_s"] = ("bn", f"{t}.conv{c}.0.1")
          names[f"{k}_conv{c}_t"] = ("conv", f"{t}.conv{c}.0.3")
        names[f"{k}_bn{c}"] = ("bn", f"{t}.conv{c}.1")
      names[f"{k}_downsample_conv"] = ("conv", f"{t}.downsample.0")
      names[f"{k}_downsample_bn"] = ("bn", f"{t}.downsample.1")
  return names


def _ctp_names(block_type, depth, prefix):
  names = {}
  p = prefix
  if block_type == "r3d":
    names.update(stem_conv=("conv", f"{p}stem.conv"), stem_bn=("bn", f"{p}stem.bn"))
  else:
    names.update(stem_conv_s=("conv", f"{p}stem.conv_s"), stem_bn_s=("bn", f"{p}stem.bn_s"),
                 stem_conv_t=("conv", f"{p}stem.conv_t"), stem_bn_t=("bn", f"{p}stem.bn_t"))
  for stage, blocks in enumerate(STAGE_BLOCKS[depth], start=1):
    for block in range(blocks):
      k, t = f"stage{stage}_block{block + 1}", f"{p}layer{stage}.{block}"
      for c in (1, 2):
        if block_type == "r3d":
          names[f"{k}_conv{c}"] = ("conv", f"{t}.conv{c}.conv")
        else:
          names[f"{k}_conv{c}_s"] = ("conv", f"{t}.conv{c}.conv_s")
          names[f"{k}_conv{c}_bn_s"] = ("bn", f"{t}.conv{c}.bn_s")
          names[f"{k}_conv{c}_t"] = ("conv", f"{t}.conv{c}.conv_t")
        names[f"{k}_bn{c}"] = ("bn", f"{t}.bn{c}")
      names[f"{k}_downsample_conv"] = ("conv", f"{t}.downsample.conv")
      names[f"{k}_downsample_bn"] = ("bn", f"{t}.downsample_bn")
  return names


def _torch_tensors(kind, prefix):
  if kind == "conv":
    return [f"{prefix}.weight"]
  return [f"{prefix}.{t}" for t, _ in _BN]


def _to_keras(kind, arrays):
  if kind == "conv":   # [O, I, kt, kh, kw] -> [kt, kh, kw, I, O]
    return [np.transpose(arrays[0], (2, 3, 4, 1, 0))]
  return list(arrays)


def from_torch(state_dict, arch, layout="torchvision", *, preset="standard", backbone_stride=8,
               input_shape=(None, None, None, 3)):
  """A Keras model with the weights of a PyTorch video ResNet state dict.

  Args:
    state_dict: {name: numpy array} (torch tensors work too: anything `np.asarray` takes).
    arch: "r3d_18" or "r2plus1d_18" (the CtP layout also takes depths 10 and 34).
    layout: "torchvision" or "ctp" (see module docstring).
    preset, backbone_stride: backbone strides ("standard" = torchvision's network;
      "pretrain" = CtP's pretraining network).
    input_shape: the clip shape `(T, H, W, 3)` (None entries stay dynamic).

  Returns:
    A keras.Model taking float32 `[B, T, H, W, 3]`, already normalised like the PyTorch
    model's input (no Normalize layer), returning what the PyTorch model returns on the NCTHW
    transpose: logits `[B, classes]` when `fc.*` is present (torchvision layout), else the
    backbone's feature maps `[B, T', H', W', C]` (channels last).

  Example (torch not needed; weights from anywhere, e.g. `np.load("r3d_18.npz")`):
  >>> import numpy as np
  >>> from ctp_tf.models import build_backbone
  >>> from ctp_tf.models.torch_import import to_torch_state_dict
  >>> sd = to_torch_state_dict(build_backbone("r3d_18", bn_epsilon=1e-5), "r3d_18")
  >>> model = from_torch(sd, "r3d_18")
  >>> model.name
  'r3d_18'
  """
  if arch not in ARCHS:
    raise ValueError(f"from_torch: unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
  if layout not in ("torchvision", "ctp"):
    raise ValueError(f"from_torch: layout must be 'torchvision' or 'ctp', got {layout!r}")
  block_type, depth = ARCHS[arch]
  if layout == "torchvision" and depth != 18:
    raise ValueError(f"from_torch: torchvision has no {arch}; use r3d_18 or r2plus1d_18")
  state = {k[len("module."):] if k.startswith("module.") else k: v
           for k, v in state_dict.items()}
  head_names = []
  if layout == "ctp":
    prefix = "backbone." if any(k.startswith("backbone.") for k in state) else ""
    if prefix:
      head_names = sorted(k for k in state if not k.startswith(prefix))
      if head_names:
        logging.info("from_torch: skipping %d tensors outside the backbone (%s, ...)",
                     len(head_names), head_names[0])
        state = {k: v for k, v in state.items() if k.startswith(prefix)}
    names = _ctp_names(block_type, depth, prefix)
    bn_epsilon, mid_rule = 1e-3, "conv"
  else:
    names = _torchvision_names(block_type, depth)
    bn_epsilon, mid_rule = 1e-5, "block"

  backbone = build_backbone(arch, preset, backbone_stride=backbone_stride, bn_epsilon=bn_epsilon,
                            input_shape=input_shape, normalize_input=False,
                            r2plus1d_mid_rule=mid_rule)
  present = {layer.name for layer in backbone.layers}
  names = {k: v for k, v in names.items() if k in present}   # e.g. no downsample in layer1

  used, assignments = set(), []
  for layer_name, (kind, torch_prefix) in names.items():
    layer = backbone.get_layer(layer_name)
    tensors = _torch_tensors(kind, torch_prefix)
    missing = [t for t in tensors if t not in state]
    if missing:
      raise ValueError(f"from_torch: missing tensor {missing[0]!r} (for Keras layer "
                       f"{layer_name!r}; {len(missing)} missing here)")
    arrays = _to_keras(kind, [np.asarray(state[t], dtype=np.float32) for t in tensors])
    for t, a, v in zip(tensors, arrays, layer.weights):
      if tuple(a.shape) != tuple(v.shape):
        raise ValueError(f"from_torch: tensor {t!r} has shape {tuple(np.shape(state[t]))}, "
                         f"which does not fit Keras layer {layer_name!r} (weight shape "
                         f"{tuple(v.shape)} in Keras layout)")
    assignments.append((layer, arrays))
    used.update(tensors)

  model = backbone
  fc = [k for k in ("fc.weight", "fc.bias") if k in state]
  if layout == "torchvision" and fc:
    if len(fc) != 2:
      raise ValueError("from_torch: 'fc.weight' and 'fc.bias' must come together")
    from ctp_tf.models.classifier import VideoClassifier  # pylint: disable=import-outside-toplevel
    w = np.asarray(state["fc.weight"], np.float32)
    if w.ndim != 2 or w.shape[1] != backbone.num_features:
      raise ValueError(f"from_torch: tensor 'fc.weight' has shape {w.shape}, expected "
                       f"[classes, {backbone.num_features}]")
    model = VideoClassifier(backbone, w.shape[0], dropout=0.0, name=arch)
    assignments.append((model.get_layer("logits"), [w.T, np.asarray(state["fc.bias"],
                                                                      np.float32)]))
    used.update(fc)

  extra = sorted(k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES))
  if extra:
    raise ValueError(f"from_torch: unexpected tensor {extra[0]!r} for {arch} / {layout} "
                     f"({len(extra)} unexpected in all)")
  for layer, arrays in assignments:
    layer.set_weights(arrays)
  return model


def to_torch_state_dict(backbone, arch, layout="torchvision", classifier=None):
  """The inverse mapping: a backbone's weights under PyTorch names (numpy arrays).

  Handy for tests and for handing Keras-trained weights to PyTorch code.
  """
  block_type, depth = ARCHS[arch]
  names = (_torchvision_names(block_type, depth) if layout == "torchvision"
           else _ctp_names(block_type, depth, "backbone."))
  present = {layer.name for layer in backbone.layers}
  out = {}
  for layer_name, (kind, prefix) in names.items():
    if layer_name not in present:
      continue
    weights = [np.asarray(w) for w in backbone.get_layer(layer_name).get_weights()]
    if kind == "conv":
      out[f"{prefix}.weight"] = np.transpose(weights[0], (4, 3, 0, 1, 2))
    else:
      for (t, _), w in zip(_BN, weights):
        out[f"{prefix}.{t}"] = w
  if classifier is not None:
    kernel, bias = classifier.get_layer("logits").get_weights()
    out["fc.weight"], out["fc.bias"] = np.asarray(kernel).T, np.asarray(bias)
  return out
