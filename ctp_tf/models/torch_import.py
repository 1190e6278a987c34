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

Reading weight files needs no torch either: `read_state_dict` takes `.pth`/`.pt` (torch's
zip + pickle format, read by `read_torch_checkpoint` with a restricted unpickler over the
standard library), `.safetensors` (`read_safetensors`) and `.npz`.
"""

import collections
import json
import logging
import os
import pickle
import struct
import zipfile

import numpy as np

from ctp_tf.models.resnet3d import ARCHS, BACKBONE_STRIDE, STAGE_BLOCKS, build_backbone

_BN = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
       ("running_var", "moving_variance"))
_IGNORED_SUFFIXES = ("num_batches_tracked",)


# Where each Keras layer's tensors live in a PyTorch state dict, per layout: `{t}` is the block
# (`layer<stage>.<block>`), `{c}` the conv of the block (1 or 2).
_LAYOUT_NAMES = {
    "torchvision": {
        "stem_conv": "stem.0", "stem_bn": "stem.1", "stem_conv_s": "stem.0",
        "stem_bn_s": "stem.1", "stem_conv_t": "stem.3", "stem_bn_t": "stem.4",
        "conv": "{t}.conv{c}.0", "conv_s": "{t}.conv{c}.0.0", "conv_bn_s": "{t}.conv{c}.0.1",
        "conv_t": "{t}.conv{c}.0.3", "bn": "{t}.conv{c}.1",
        "downsample_conv": "{t}.downsample.0", "downsample_bn": "{t}.downsample.1"},
    "ctp": {
        "stem_conv": "stem.conv", "stem_bn": "stem.bn", "stem_conv_s": "stem.conv_s",
        "stem_bn_s": "stem.bn_s", "stem_conv_t": "stem.conv_t", "stem_bn_t": "stem.bn_t",
        "conv": "{t}.conv{c}.conv", "conv_s": "{t}.conv{c}.conv_s",
        "conv_bn_s": "{t}.conv{c}.bn_s", "conv_t": "{t}.conv{c}.conv_t", "bn": "{t}.bn{c}",
        "downsample_conv": "{t}.downsample.conv", "downsample_bn": "{t}.downsample_bn"},
}


def _layout_names(layout, block_type, depth, prefix=""):
  """{keras layer name: (kind, torch prefix)} for a backbone in `layout`'s naming."""
  n = _LAYOUT_NAMES[layout]
  p = prefix
  names = {}
  stem = ("stem_conv", "stem_bn") if block_type == "r3d" else \
      ("stem_conv_s", "stem_bn_s", "stem_conv_t", "stem_bn_t")
  for key in stem:
    names[key] = ("conv" if "_conv" in key else "bn", p + n[key])
  for stage, blocks in enumerate(STAGE_BLOCKS[depth], start=1):
    for block in range(blocks):
      k, t = f"stage{stage}_block{block + 1}", f"{p}layer{stage}.{block}"
      for c in (1, 2):
        if block_type == "r3d":
          names[f"{k}_conv{c}"] = ("conv", n["conv"].format(t=t, c=c))
        else:
          names[f"{k}_conv{c}_s"] = ("conv", n["conv_s"].format(t=t, c=c))
          names[f"{k}_conv{c}_bn_s"] = ("bn", n["conv_bn_s"].format(t=t, c=c))
          names[f"{k}_conv{c}_t"] = ("conv", n["conv_t"].format(t=t, c=c))
        names[f"{k}_bn{c}"] = ("bn", n["bn"].format(t=t, c=c))
      names[f"{k}_downsample_conv"] = ("conv", n["downsample_conv"].format(t=t, c=0))
      names[f"{k}_downsample_bn"] = ("bn", n["downsample_bn"].format(t=t, c=0))
  return names


def _torchvision_names(block_type, depth):
  """{keras layer name: (kind, torch prefix)} for torchvision's video ResNets."""
  return _layout_names("torchvision", block_type, depth)


def _ctp_names(block_type, depth, prefix):
  """The same for the CtP release's backbone (`prefix`: e.g. "backbone.")."""
  return _layout_names("ctp", block_type, depth, prefix)


def _torch_tensors(kind, prefix):
  if kind == "conv":
    return [f"{prefix}.weight"]
  return [f"{prefix}.{t}" for t, _ in _BN]


def _to_keras(kind, arrays):
  if kind == "conv":   # [O, I, kt, kh, kw] -> [kt, kh, kw, I, O]
    return [np.transpose(arrays[0], (2, 3, 4, 1, 0))]
  return list(arrays)


def from_torch(state_dict, arch, layout="torchvision", *, preset="standard",
               backbone_stride=BACKBONE_STRIDE, input_shape=(None, None, None, 3)):
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


# -- Weight files without torch. ---------------------------------------------------------------

_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                       "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?", "BF16": "<u2"}


def _bf16_to_float32(a):
  """bfloat16 bit patterns (uint16) -> float32: bfloat16 is the top half of a float32."""
  return (np.asarray(a).astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path):
  """{name: numpy array} from a .safetensors file: an 8-byte little-endian header length, a
  JSON header {name: {dtype, shape, data_offsets}}, then the raw little-endian buffer."""
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
    if dtype == "BF16":
      a = _bf16_to_float32(a)
    out[name] = a.reshape(info["shape"]).copy()
  return out


# torch storage class -> numpy dtype (byte order added from the archive's `byteorder` record).
# "bf16" is read as uint16 bit patterns and widened to float32.
_TORCH_STORAGES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexDoubleStorage": "c16",
    "ComplexFloatStorage": "c8",
}
_TORCH_DTYPES = {
    "float64": "f8", "double": "f8", "float32": "f4", "float": "f4", "float16": "f2",
    "half": "f2", "bfloat16": "bf16", "int64": "i8", "long": "i8", "int32": "i4", "int": "i4",
    "int16": "i2", "short": "i2", "int8": "i1", "uint8": "u1", "bool": "?",
    "complex128": "c16", "complex64": "c8",
}


class _StorageType:
  """Stands in for `torch.FloatStorage` & co. (and `torch.float32` & co.): just the dtype."""

  def __init__(self, name, dtype):
    self.name, self.dtype = name, dtype


class _Storage:
  """The raw bytes of one storage record and how to read them."""

  def __init__(self, raw, dtype, byteorder, key):
    self.raw, self.dtype, self.byteorder, self.key = raw, dtype, byteorder, key

  def array(self, dtype=None):
    dtype = dtype or self.dtype
    if dtype is None:
      raise ValueError(f"storage {self.key!r} has no dtype (an untyped storage read as a tensor "
                       "without one)")
    np_dtype = np.dtype("u2" if dtype == "bf16" else dtype)
    if np_dtype.itemsize > 1:
      np_dtype = np_dtype.newbyteorder("<" if self.byteorder == "little" else ">")
    if len(self.raw) % np_dtype.itemsize:
      raise ValueError(f"storage {self.key!r}: {len(self.raw)} bytes is not a whole number of "
                       f"{dtype} elements")
    return np.frombuffer(self.raw, np_dtype), dtype


def _tensor(storage, offset, size, stride, dtype=None):
  """A numpy copy of the strided view `storage[offset + sum(i_k * stride_k)]` (bounds checked:
  a corrupt file must not read outside its storage)."""
  flat, dtype = storage.array(dtype)
  size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
  if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
    raise ValueError(f"storage {storage.key!r}: bad tensor layout (offset {offset}, size {size}, "
                     f"stride {stride})")
  if 0 in size:
    out = np.zeros(size, flat.dtype)
  else:
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
      raise ValueError(f"storage {storage.key!r}: tensor (offset {offset}, size {size}, stride "
                       f"{stride}) reaches element {last} of a storage of {flat.size}")
    out = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * flat.itemsize for s in stride),
        writeable=False).copy()
  out = out.astype(out.dtype.newbyteorder("="), copy=False)
  return _bf16_to_float32(out) if dtype == "bf16" else out


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  return data


class _RestrictedUnpickler(pickle.Unpickler):
  """Builds only containers, numbers, strings and tensors (as numpy arrays): any other global
  (a pickled nn.Module, an arbitrary callable) is refused, so loading runs no foreign code."""

  _BUILTINS = {"set": set, "frozenset": frozenset, "tuple": tuple, "list": list, "dict": dict,
               "slice": slice, "complex": complex, "float": float, "int": int, "bool": bool}
  _TORCH_UTILS = {"_rebuild_tensor_v2": _rebuild_tensor_v2,
                  "_rebuild_tensor_v3": _rebuild_tensor_v3,
                  "_rebuild_parameter": _rebuild_parameter,
                  "_rebuild_parameter_with_state": _rebuild_parameter}

  def __init__(self, file, load_storage, path):
    super().__init__(file)
    self._load_storage = load_storage
    self._path = path

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module in ("builtins", "__builtin__") and name in self._BUILTINS:
      return self._BUILTINS[name]
    if module == "torch._utils" and name in self._TORCH_UTILS:
      return self._TORCH_UTILS[name]
    if module == "torch" and name in _TORCH_STORAGES:
      return _StorageType(name, _TORCH_STORAGES[name])
    if module == "torch" and name == "UntypedStorage":
      return _StorageType(name, None)
    if module == "torch" and name in _TORCH_DTYPES:
      return _StorageType(name, _TORCH_DTYPES[name])
    raise pickle.UnpicklingError(
        f"{self._path}: refusing to load global {module}.{name} (only tensors, containers, "
        "numbers and strings are read; save a state_dict, not a pickled object)")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f"{self._path}: unsupported persistent id {pid!r:.80}")
    _, storage_type, key, _location, _numel = pid
    return self._load_storage(str(key), storage_type.dtype)


def read_torch_checkpoint(path):
  """The object a `torch.save` zip checkpoint holds, with numpy arrays in place of tensors.

  The format (torch >= 1.6): a zip archive `<name>/data.pkl` (a pickle whose tensors are
  `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` calls and whose storages
  are persistent ids `("storage", torch.<Type>Storage, key, location, numel)`),
  `<name>/data/<key>` (each storage's raw bytes) and `<name>/byteorder`. Tensors come back as
  contiguous numpy copies of their (possibly strided, offset) views, in their own dtype;
  bfloat16 becomes float32 (exact). Objects other than tensors, containers, numbers and strings
  are refused (like `torch.load(weights_only=True)`).

  Raises:
    ValueError: not a torch zip checkpoint (e.g. the legacy pre-1.6 format), a refused global,
      or a corrupt record.
  """
  if not zipfile.is_zipfile(path):
    with open(path, "rb") as f:
      head = f.read(2)
    legacy = " (this looks like torch's legacy pre-1.6 format: re-save it with a newer torch)" \
        if head[:1] == b"\x80" else ""
    raise ValueError(f"{path}: not a torch zip checkpoint{legacy}")
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
      raise ValueError(f"{path}: no single '<name>/data.pkl' record in the zip (a TorchScript "
                       "archive or another zip file?)")
    prefix = pkl[0][:-len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = z.read(prefix + "byteorder").decode().strip()
      if byteorder not in ("little", "big"):
        raise ValueError(f"{path}: unknown byteorder {byteorder!r}")
    storages = {}

    def load_storage(key, dtype):
      if key not in storages:
        record = prefix + "data/" + key
        if record not in names:
          raise ValueError(f"{path}: storage record {record!r} is missing")
        storages[key] = z.read(record)
      return _Storage(storages[key], dtype, byteorder, key)

    with z.open(pkl[0]) as f:
      try:
        return _RestrictedUnpickler(f, load_storage, path).load()
      except pickle.UnpicklingError as e:
        raise ValueError(str(e)) from None


def read_state_dict(path):
  """{name: numpy array} from .pth/.pt (torch's zip format), .safetensors or .npz.

  Unwraps mmcv's `{"state_dict": ..., "meta": ...}`; non-tensor entries are dropped. Arrays
  keep their dtype (bfloat16 becomes float32); `from_torch` casts to float32.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"no such file {path}")
  lower = path.lower()
  if lower.endswith(".safetensors"):
    return read_safetensors(path)
  if lower.endswith(".npz"):
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  if lower.endswith((".pth", ".pt", ".bin", ".ckpt")):
    obj = read_torch_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
      obj = obj["state_dict"]
    if not isinstance(obj, dict):
      raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
  raise ValueError(f"{path}: expected .pth, .pt, .safetensors or .npz")
