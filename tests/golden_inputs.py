"""Seeded inputs and weights of the PyTorch golden files (tests/golden/*.npz).

`tools/make_golden.py` (run once, in a venv with torch) feeds these to PyTorch/torchvision and
writes the outputs; the tests feed the same to our Keras code. Only inputs that a seed makes
are shared; weights are never stored.
"""

import zlib

import numpy as np

CLIP_SHAPE = (1, 3, 8, 32, 32)    # N, C, T, H, W
NUM_CLASSES = 10


def seeded_weights(shapes, seed=0):
  """{name: float32 array} for a video ResNet state dict's {name: shape}.

  Each tensor gets its own generator seeded by (seed, crc32(name)), so the result does not
  depend on dict order. Scales keep activations O(1) through 18 layers in eval mode.
  """
  out = {}
  for name, shape in shapes.items():
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    shape = tuple(shape)
    if name.endswith("running_var"):
      a = rng.uniform(0.5, 2.0, shape)
    elif name.endswith("running_mean"):
      a = rng.normal(0.0, 0.1, shape)
    elif len(shape) == 1 and name.endswith("weight"):       # BN gamma
      a = rng.uniform(0.5, 1.0, shape)
    elif len(shape) == 1:                                    # BN beta, fc bias
      a = rng.normal(0.0, 0.1, shape)
    else:                                                    # conv / fc kernels
      fan_in = int(np.prod(shape[1:]))
      a = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
    out[name] = a.astype(np.float32)
  return out


def roi_cases(seed=0):
  """Features and boxes for ROIAlign incl. boxes crossing and outside the border."""
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(2, 4, 10, 12)).astype(np.float32)    # N, C, H, W
  boxes = []
  for _ in range(16):      # random boxes in and around a 48 x 40 image (scale 1/4)
    x1, y1 = rng.uniform(-12, 52), rng.uniform(-12, 44)
    boxes.append([rng.integers(0, 2), x1, y1, x1 + rng.uniform(1, 30), y1 + rng.uniform(1, 30)])
  boxes += [
      [0, -6, -6, 10, 10],      # crosses the top-left corner: edge clamp within one pixel
      [1, 40, 30, 60, 52],      # crosses the bottom-right corner
      [0, -40, -40, -8, -8],    # wholly outside
      [1, 60, 50, 80, 70],      # wholly outside, bottom right
      [0, 0, 0, 48, 40],        # the whole image
      [1, 10, 10, 10, 10],      # empty box
      [0, 47.9, 39.9, 52, 44],  # samples just past the last pixel centre
  ]
  return features, np.asarray(boxes, np.float32)


ROI_SETTINGS = (  # (output_size, spatial_scale, sampling_ratio, aligned)
    (5, 0.25, 2, True), (3, 0.25, 1, True), (4, 0.5, 3, True), (5, 0.25, 2, False))
