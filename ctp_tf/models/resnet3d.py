"""R3D and R(2+1)D ResNets (basic blocks, depth 10/18/34), channels last `[B, T, H, W, C]`.

Padding is explicit (ZeroPadding3D + "valid" conv) wherever a conv strides: Keras' "same"
pads stride-2 convs asymmetrically (0 before, 1 after on even sizes) where PyTorch pads
symmetrically, which shifts every sample and breaks weight compatibility. Stride-1 convs with
odd kernels use "same", which is symmetric there, saving a copy per conv.
"""

import keras

from ctp_tf.defaults import BACKBONE_STRIDE
from ctp_tf.layers.initializers import NumpyNormal
from ctp_tf.layers.normalization import Normalize

STAGE_BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
STAGE_WIDTHS = (64, 128, 256, 512)
# R(2+1)D stem: a 1x7x7 conv to 45 channels, then a temporal conv to 64 (torchvision / CtP).
R2PLUS1D_STEM_MID = 45

ARCHS = {f"{name}_{depth}": (block, depth)
         for name, block in (("r3d", "r3d"), ("r2plus1d", "r2plus1d"))
         for depth in STAGE_BLOCKS}


def scaled(channels, width_multiplier):
  """Channel count after the width multiplier (at least 1)."""
  return max(1, int(round(channels * width_multiplier)))


def r2plus1d_mid_channels(c_in, c_out, d=3):
  """floor(3 d^2 Cin Cout / (d^2 Cin + 3 Cout)): the (2+1)D factorisation's hidden width,
  chosen so its parameter count matches the full d x d x d conv."""
  return (3 * d * d * c_in * c_out) // (d * d * c_in + 3 * c_out)


def _triple(v):
  return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def _conv(x, filters, kernel, strides, name, kernel_initializer):
  """Conv3D without bias with PyTorch's symmetric padding (kernel // 2 per side)."""
  kernel, strides = _triple(kernel), _triple(strides)
  if all(s == 1 for s in strides) and all(k % 2 == 1 for k in kernel):
    padding = "same"
  else:
    pad = tuple((k // 2, k // 2) for k in kernel)
    if any(p != (0, 0) for p in pad):
      x = keras.layers.ZeroPadding3D(pad, name=name + "_pad")(x)
    padding = "valid"
  return keras.layers.Conv3D(filters, kernel, strides=strides, padding=padding, use_bias=False,
                             kernel_initializer=kernel_initializer, name=name)(x)


class ResNet3DBackbone(keras.Model):
  """R3D / R(2+1)D backbone as a functional Keras model; output `[B, T', H', W', C]`.

  Args:
    block_type: "r3d" (3x3x3 convs) or "r2plus1d" (1x3x3 spatial conv, BN, ReLU, 3x1x1
      temporal conv).
    depth: 10, 18 or 34 (basic blocks per stage (1,1,1,1), (2,2,2,2), (3,4,6,3)).
    width_multiplier: scales every width (0.125 gives 8..64 channels for tests and demos).
    stem_temporal_kernel, stem_temporal_stride: the stem's temporal conv (R3D: 3x7x7 conv;
      R(2+1)D: the 3x1x1 conv after the 1x7x7 one). Spatial stride of the stem is 2.
    stem_max_pool: a 1x3x3 max-pool with stride (1, 2, 2) after the stem.
    spatial_strides, temporal_strides: stride of the first block of each of the 4 stages.
      (1,2,2,2)/(1,2,2,2) is the standard network (total stride 16 x 8); CtP pretraining
      keeps stage 4 at spatial stride 1 (total 16 -> 2 frames, 112 -> 14 pixels).
    bn_epsilon: 1e-3 (CtP) or 1e-5 (torchvision weights).
    synchronized_bn: BatchNorm statistics over all replicas (tf.distribute).
    normalize_input: first layer maps 0..255 RGB (uint8 or float) to ImageNet-normalised
      floats; False for inputs already normalised (PyTorch-compatible models).
    r2plus1d_mid_rule: "conv" (each (2+1)D conv uses its own Cin, Cout: the CtP release) or
      "block" (both convs of a block use the block's input width: torchvision).
    input_shape: `(T, H, W, 3)`, None for dimensions left dynamic.

  Attributes: `num_features` (output channels), `spatial_stride`, `temporal_stride`.

  Example:
  >>> import numpy as np
  >>> backbone = ResNet3DBackbone("r3d", 18, width_multiplier=0.125)
  >>> y = backbone(np.zeros((1, 8, 32, 32, 3), "uint8"))
  >>> tuple(y.shape), backbone.num_features
  ((1, 1, 2, 2, 64), 64)
  """

  def __init__(self, block_type="r3d", depth=18, width_multiplier=1.0, stem_temporal_kernel=3,
               stem_temporal_stride=1, stem_max_pool=False, spatial_strides=(1, 2, 2, 2),
               temporal_strides=(1, 2, 2, 2), bn_epsilon=1e-3, synchronized_bn=False,
               normalize_input=True, r2plus1d_mid_rule="conv",
               input_shape=(None, None, None, 3), name=None, trainable=True, **kwargs):
    if block_type not in ("r3d", "r2plus1d"):
      raise ValueError(f"block_type must be 'r3d' or 'r2plus1d', got {block_type!r}")
    if depth not in STAGE_BLOCKS:
      raise ValueError(f"depth must be one of {sorted(STAGE_BLOCKS)}, got {depth}")
    if r2plus1d_mid_rule not in ("conv", "block"):
      raise ValueError(f"r2plus1d_mid_rule must be 'conv' or 'block', got {r2plus1d_mid_rule!r}")
    spatial_strides, temporal_strides = tuple(spatial_strides), tuple(temporal_strides)
    if len(spatial_strides) != 4 or len(temporal_strides) != 4:
      raise ValueError("spatial_strides and temporal_strides need one entry per stage (4)")
    input_shape = tuple(input_shape)
    # Kaiming normal, fan_out (torchvision); drawn with numpy (fast on every backend).
    init = NumpyNormal(mode="fan_out")

    def bn(x, name):
      return keras.layers.BatchNormalization(axis=-1, momentum=0.9, epsilon=bn_epsilon,
                                             synchronized=synchronized_bn, name=name)(x)

    def relu(x, name):
      return keras.layers.ReLU(name=name)(x)

    def conv3x3(x, c_in, c_out, mid, strides, name):
      """A 3x3x3 conv (R3D) or its (2+1)D factorisation; no BN after (the block adds it)."""
      st, ss = strides
      if block_type == "r3d":
        return _conv(x, c_out, 3, (st, ss, ss), name, init)
      x = _conv(x, mid, (1, 3, 3), (1, ss, ss), name + "_s", init)
      x = relu(bn(x, name + "_bn_s"), name + "_relu_s")
      return _conv(x, c_out, (3, 1, 1), (st, 1, 1), name + "_t", init)

    inputs = keras.Input(shape=input_shape, name="clip")
    x = Normalize(name="normalize")(inputs) if normalize_input else inputs
    stem = scaled(64, width_multiplier)
    if block_type == "r3d":
      x = _conv(x, stem, (stem_temporal_kernel, 7, 7), (stem_temporal_stride, 2, 2),
                "stem_conv", init)
      x = relu(bn(x, "stem_bn"), "stem_relu")
    else:
      x = _conv(x, scaled(R2PLUS1D_STEM_MID, width_multiplier), (1, 7, 7), (1, 2, 2),
                "stem_conv_s", init)
      x = relu(bn(x, "stem_bn_s"), "stem_relu_s")
      x = _conv(x, stem, (stem_temporal_kernel, 1, 1), (stem_temporal_stride, 1, 1),
                "stem_conv_t", init)
      x = relu(bn(x, "stem_bn_t"), "stem_relu_t")
    if stem_max_pool:
      # After a ReLU, zero padding acts like PyTorch's -inf padding.
      x = keras.layers.ZeroPadding3D(((0, 0), (1, 1), (1, 1)), name="stem_pool_pad")(x)
      x = keras.layers.MaxPooling3D((1, 3, 3), strides=(1, 2, 2), name="stem_pool")(x)

    c_in = stem
    for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS[depth], STAGE_WIDTHS), start=1):
      c_out = scaled(width, width_multiplier)
      for block in range(1, blocks + 1):
        prefix = f"stage{stage}_block{block}"
        strides = ((temporal_strides[stage - 1], spatial_strides[stage - 1]) if block == 1
                   else (1, 1))
        if r2plus1d_mid_rule == "block":
          mid1 = mid2 = r2plus1d_mid_channels(c_in, c_out)
        else:
          mid1, mid2 = r2plus1d_mid_channels(c_in, c_out), r2plus1d_mid_channels(c_out, c_out)
        shortcut = x
        y = conv3x3(x, c_in, c_out, mid1, strides, prefix + "_conv1")
        y = relu(bn(y, prefix + "_bn1"), prefix + "_relu1")
        y = conv3x3(y, c_out, c_out, mid2, (1, 1), prefix + "_conv2")
        y = bn(y, prefix + "_bn2")
        if strides != (1, 1) or c_in != c_out:
          st, ss = strides
          shortcut = keras.layers.Conv3D(c_out, 1, strides=(st, ss, ss), use_bias=False,
                                         kernel_initializer=init,
                                         name=prefix + "_downsample_conv")(shortcut)
          shortcut = bn(shortcut, prefix + "_downsample_bn")
        x = keras.layers.Add(name=prefix + "_add")([y, shortcut])
        x = relu(x, prefix + "_out")
        c_in = c_out

    super().__init__(inputs=inputs, outputs=x, name=name_or(name, block_type, depth),
                     trainable=trainable, **kwargs)
    self.block_type = block_type
    self.depth = depth
    self.width_multiplier = float(width_multiplier)
    self.stem_temporal_kernel = int(stem_temporal_kernel)
    self.stem_temporal_stride = int(stem_temporal_stride)
    self.stem_max_pool = bool(stem_max_pool)
    self.spatial_strides = spatial_strides
    self.temporal_strides = temporal_strides
    self.bn_epsilon = float(bn_epsilon)
    self.synchronized_bn = bool(synchronized_bn)
    self.normalize_input = bool(normalize_input)
    self.r2plus1d_mid_rule = r2plus1d_mid_rule
    self.clip_input_shape = input_shape
    self.num_features = c_in
    self.spatial_stride = 2 * (2 if stem_max_pool else 1)
    for s in spatial_strides:
      self.spatial_stride *= s
    self.temporal_stride = int(stem_temporal_stride)
    for s in temporal_strides:
      self.temporal_stride *= s

  def get_config(self):
    return {
        "name": self.name, "trainable": self.trainable,
        "block_type": self.block_type, "depth": self.depth,
        "width_multiplier": self.width_multiplier,
        "stem_temporal_kernel": self.stem_temporal_kernel,
        "stem_temporal_stride": self.stem_temporal_stride,
        "stem_max_pool": self.stem_max_pool,
        "spatial_strides": list(self.spatial_strides),
        "temporal_strides": list(self.temporal_strides),
        "bn_epsilon": self.bn_epsilon, "synchronized_bn": self.synchronized_bn,
        "normalize_input": self.normalize_input, "r2plus1d_mid_rule": self.r2plus1d_mid_rule,
        "input_shape": list(self.clip_input_shape),
    }

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def name_or(name, block_type, depth):
  return name or f"{block_type}_{depth}"


# Registered under an explicit name so `.keras` files reload without importing this module's
# path by hand (keras looks the class up by "ctp_tf>ResNet3DBackbone").
ResNet3DBackbone = keras.saving.register_keras_serializable(package="ctp_tf")(ResNet3DBackbone)


def preset_strides(preset, backbone_stride=BACKBONE_STRIDE):
  """(spatial_strides, temporal_strides) of a preset."""
  if preset == "standard":
    return (1, 2, 2, 2), (1, 2, 2, 2)
  if preset == "pretrain":
    if backbone_stride == 8:
      return (1, 2, 2, 1), (1, 2, 2, 2)
    if backbone_stride == 16:
      return (1, 2, 2, 2), (1, 2, 2, 2)
    raise ValueError(f"backbone_stride must be 8 or 16, got {backbone_stride}")
  raise ValueError(f"preset must be 'pretrain' or 'standard', got {preset!r}")


def build_backbone(arch="r3d_18", preset="standard", *, backbone_stride=BACKBONE_STRIDE,
                   width_multiplier=1.0, bn_epsilon=1e-3, synchronized_bn=False,
                   input_shape=(None, None, None, 3), **kwargs):
  """A backbone by name: `arch` in r3d_10/18/34, r2plus1d_10/18/34.

  `preset="pretrain"`: CtP's pretraining network (16 frames -> 2; spatial stride
  `backbone_stride`, 8 keeps stage 4 at full resolution). `preset="standard"`: every stage
  after the first downsamples (action recognition, feature export). Extra keyword arguments
  go to `ResNet3DBackbone` (e.g. `normalize_input=False`, `r2plus1d_mid_rule="block"`).

  Example:
  >>> b = build_backbone("r2plus1d_18", "pretrain", width_multiplier=0.125)
  >>> b.spatial_stride, b.temporal_stride
  (8, 8)
  """
  if arch not in ARCHS:
    raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
  block_type, depth = ARCHS[arch]
  spatial, temporal = preset_strides(preset, backbone_stride)
  return ResNet3DBackbone(block_type, depth, width_multiplier=width_multiplier,
                          spatial_strides=spatial, temporal_strides=temporal,
                          bn_epsilon=bn_epsilon, synchronized_bn=synchronized_bn,
                          input_shape=input_shape, name=kwargs.pop("name", arch), **kwargs)


def standard_backbone_like(backbone, **overrides):
  """The same network and weights with standard strides (every stage after the first
  downsamples), e.g. to export a backbone pretrained at stride 8. `overrides` change other
  constructor arguments (e.g. `synchronized_bn=False`, `input_shape`)."""
  config = backbone.get_config()
  config.update(spatial_strides=[1, 2, 2, 2], temporal_strides=[1, 2, 2, 2])
  config.update(overrides)
  standard = ResNet3DBackbone.from_config(config)
  standard.set_weights(backbone.get_weights())
  return standard
