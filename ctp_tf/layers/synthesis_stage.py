"""The pixel work of CtP synthesis and colour jitter as a batched keras.ops stage for the step.

`config.synthesis.placement = "accelerator"`: the input pipeline does what only the host can
(read, sample, decode the crop window, flip) plus the cheap per-clip random draws and the box
trajectories (a few hundred floats per clip, computed on whole batches), and yields uint8 crops
with those parameters. `finish_clips` then pastes the patches and applies hue/saturation and
brightness/contrast inside the train step (`CtPModel.call`), on whatever device runs the step.

The random numbers are NOT drawn here: TensorFlow's and JAX's stateless generators differ, so
drawing them on the host is what makes both placements and both backends give the same boxes
and (up to float rounding) the same pixels for the same seeds.

XLA-friendly by construction: keras.ops only, static shapes (T, H, W static; every trajectory
is rendered on the whole frame, no per-box windows), no crop_and_resize (bilinear sampling is
four flat gathers, with the edge clamping of `ctp_tf.data.synthesis`), no sort (the paste order
is a rank computed by comparisons), no data-dependent control flow. The arithmetic mirrors
`ctp_tf.data.synthesis._paste` and `ctp_tf.data.color` (hue/saturation of TF's AdjustHue /
AdjustSaturation kernels, the fused brightness/contrast), including their roundings to whole
grey levels between the stages, so outputs agree with the "input" placement within one grey
level (only values within float rounding of a .5 boundary can round the other way).
"""

from keras import ops

# Keys the input pipeline adds to a batch for this stage (besides "clip" and "boxes").
PASTE_KEYS = ("synth_source", "synth_mask", "synth_soft", "synth_d0", "synth_alpha")
COLOUR_KEYS = ("colour_hue_apply", "colour_hue", "colour_log_sat", "colour_shift",
               "colour_alpha")
STAGE_KEYS = PASTE_KEYS + COLOUR_KEYS

_MASK_RECT, _MASK_ELLIPSE = 0, 1
_LUMA = (0.299, 0.587, 0.114)


def has_stage_inputs(inputs):
  """True when a batch dict carries the parameters of this stage (accelerator placement)."""
  return isinstance(inputs, dict) and all(k in inputs for k in STAGE_KEYS)


def paste_patches(clips, boxes, source, mask, soft, d0, alpha):
  """Pastes every trajectory's patch into the clips, as `synthesis.synthesize_batch` does.

  Args:
    clips: uint8 (or float of whole grey levels) `[B, T, H, W, 3]`, static T, H, W.
    boxes: float32 `[B, N, T, 4]` whole-pixel (x1, y1, x2, y2) inside the frame.
    source: int `[B, N]` frame each patch is cut from (its box in that frame).
    mask: int `[B, N]` 0 rectangle, 1 ellipse, 2 rhombus; soft: `[B, N]` 1 for a soft edge;
    d0: float32 `[B, N]` soft-edge start; alpha: float32 `[B, N, T]` opacity, 0 where hidden.
  Returns:
    float32 `[B, T, H, W, 3]` of whole grey levels (rounded half to even, like the map).
  """
  x = ops.cast(clips, "float32")
  t_len, height, width = x.shape[1], x.shape[2], x.shape[3]
  b = ops.shape(x)[0]
  n = boxes.shape[1]
  boxes = ops.cast(boxes, "float32")
  x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
  bw, bh = x2 - x1, y2 - y1                                              # [B, N, T]
  source = ops.cast(source, "int32")

  # Paste order: larger mean area first, ties by trajectory index (a stable descending sort).
  area = ops.mean(bw, -1) * ops.mean(bh, -1)                             # [B, N]
  a_n, a_m = area[:, :, None], area[:, None, :]
  idx = ops.arange(n)
  before = (a_m > a_n) | ((a_m == a_n) & (idx[None, :] < idx[:, None])[None])   # m before n
  after = ops.logical_not(before) & (idx[:, None] != idx[None, :])[None]

  # The trajectory's box in its source frame.
  def at_source(v):
    return ops.take_along_axis(v, source[..., None], axis=2)[..., 0]    # [B, N]
  sx1, sy1, sw, sh = at_source(x1), at_source(y1), at_source(bw), at_source(bh)

  # Half-pixel bilinear coordinates inside the source patch, per frame row / column; taps
  # clamped to the patch (edge replication), as the map's crop_and_resize on padded frames.
  v = ops.arange(height, dtype="float32")[None, None, None, :] + 0.5 - y1[..., None]  # [B,N,T,H]
  u = ops.arange(width, dtype="float32")[None, None, None, :] + 0.5 - x1[..., None]   # [B,N,T,W]

  def taps(pos, size, start, extent):
    c = pos * (size / extent)[..., None] - 0.5
    f = ops.floor(c)
    frac = c - f
    hi = (size - 1.0)[..., None]                                         # [B, N, 1, 1]
    clamp = lambda z: ops.minimum(ops.maximum(z, 0.0), hi) + start[..., None, None]
    lo_i, hi_i = clamp(f), clamp(f + 1.0)
    return ops.cast(lo_i, "int32"), ops.cast(hi_i, "int32"), frac

  r0, r1, fy = taps(v, sh[..., None], sy1, bh)                           # [B, N, T, H]
  c0, c1, fx = taps(u, sw[..., None], sx1, bw)                           # [B, N, T, W]
  frame = ops.arange(b, dtype="int32")[:, None] * t_len + source        # [B, N]
  base = frame[:, :, None, None] * height
  flat = ops.reshape(x, (-1, 3))

  def gather(rows, cols):
    pix = ((base + rows)[..., :, None] * width + cols[..., None, :])     # [B, N, T, H, W]
    return ops.take(flat, ops.reshape(pix, (-1,)), axis=0)

  zero = ops.zeros_like(fy)[..., :, None] + ops.zeros_like(fx)[..., None, :]   # [B,N,T,H,W]
  fx_ = ops.reshape(fx[..., None, :] + zero, (-1, 1))
  fy_ = ops.reshape(fy[..., :, None] + zero, (-1, 1))
  top_left, top_right = gather(r0, c0), gather(r0, c1)
  bottom_left, bottom_right = gather(r1, c0), gather(r1, c1)
  top = top_left + (top_right - top_left) * fx_
  bottom = bottom_left + (bottom_right - bottom_left) * fx_
  patch = ops.reshape(top + (bottom - top) * fy_, (b, n, t_len, height, width, 3))

  # Alpha of every frame pixel for every trajectory (the map's `_alpha` on the whole frame).
  ny = v / bh[..., None] - 0.5                                           # [B, N, T, H]
  nx = u / bw[..., None] - 0.5                                           # [B, N, T, W]
  dy, dx = ops.abs(ny), ops.abs(nx)
  inside = (ops.cast(dy < 0.5, "float32")[..., :, None]
            * ops.cast(dx < 0.5, "float32")[..., None, :])
  dy, dx = dy[..., :, None], dx[..., None, :]
  mask5 = ops.cast(mask, "int32")[:, :, None, None, None]
  dist = ops.where(mask5 == _MASK_RECT, ops.maximum(dx, dy),
                   ops.where(mask5 == _MASK_ELLIPSE, ops.sqrt(dx * dx + dy * dy), dx + dy))
  shape_alpha = ops.where((mask5 == _MASK_RECT) | (dist < 0.5), 1.0, 0.0)
  d05 = ops.cast(d0, "float32")[:, :, None, None, None]
  edge = ops.clip((0.5 - dist) / (0.5 - d05), 0.0, 1.0)
  soft5 = ops.cast(soft, "float32")[:, :, None, None, None] > 0.5
  shape_alpha = shape_alpha * ops.where(soft5, edge, 1.0)
  a = inside * shape_alpha * ops.cast(alpha, "float32")[..., None, None]  # [B, N, T, H, W]

  # "Over" in paste order as a sum: each layer weighted by the transmittance of later layers.
  keep = 1.0 - a
  out = x * ops.prod(keep, axis=1)[..., None]
  after_f = ops.cast(after, "float32")                                   # [B, n, m]
  for k in range(n):
    later = ops.ones_like(a[:, 0])
    for m in range(n):
      if m != k:
        w = after_f[:, k, m][:, None, None, None]
        later = later * (1.0 - a[:, m] * w)
    out = out + patch[:, k] * (a[:, k] * later)[..., None]
  return ops.round(out)


def hue_saturation(x, apply, hue, log_sat):
  """`ctp_tf.data.color.hue_saturation_batch` on float clips of whole grey levels.

  Hue shifts by `hue` OpenCV units (degrees / 2) and the chroma scales by exp(log_sat) (capped
  at full saturation) with min/max-preserving hexagonal HSV, as TF's fused kernels compute it;
  rounded half up to whole grey levels. Clips with `apply` 0 are returned unchanged.
  """
  x = ops.cast(x, "float32")
  r, g, bl = x[..., 0], x[..., 1], x[..., 2]
  vmax = ops.maximum(ops.maximum(r, g), bl)
  vmin = ops.minimum(ops.minimum(r, g), bl)
  d = vmax - vmin
  safe = ops.where(d > 0, d, 1.0)
  h = ops.where(vmax == r, (g - bl) / safe,
                ops.where(vmax == g, 2.0 + (bl - r) / safe, 4.0 + (r - g) / safe))
  h = ops.where(d > 0, h, 0.0)
  bshape = (-1,) + (1,) * (len(x.shape) - 2)                     # per clip, onto [B, ...]
  h = h + ops.reshape(ops.cast(hue, "float32") / 30.0, bshape)    # 180 units = 6 sectors
  h = h - 6.0 * ops.floor(h / 6.0)
  chroma = ops.minimum(vmax, d * ops.reshape(ops.exp(ops.cast(log_sat, "float32")), bshape))
  low = vmax - chroma
  fr = ops.clip(ops.abs(h - 3.0) - 1.0, 0.0, 1.0)
  fg = ops.clip(2.0 - ops.abs(h - 2.0), 0.0, 1.0)
  fb = ops.clip(2.0 - ops.abs(h - 4.0), 0.0, 1.0)
  y = ops.stack([low + chroma * fr, low + chroma * fg, low + chroma * fb], -1)
  y = ops.floor(ops.clip(y + 0.5, 0.0, 255.0))
  on = ops.reshape(ops.cast(apply, "float32"), bshape + (1,)) > 0.5
  return ops.where(on, y, x)


def brightness_contrast(x, shift, alpha):
  """`ctp_tf.data.color.brightness_contrast_batch` (shift, alpha `[B, T]`) -> whole grey levels."""
  x = ops.cast(x, "float32")
  shift = ops.cast(shift, "float32")
  alpha = ops.cast(alpha, "float32")
  channel_mean = ops.mean(x, axis=(2, 3))                                # [B, T, 3]
  grey = ops.sum(channel_mean * ops.convert_to_tensor(_LUMA, "float32"), -1)
  offset = shift + (1.0 - alpha) * grey + 0.5
  y = x * alpha[..., None, None, None] + offset[..., None, None, None]
  return ops.floor(ops.clip(y, 0.0, 255.0))   # saturate_cast to uint8: clamp, truncate


def finish_clips(inputs):
  """The accelerator stage: patches, then hue/saturation, then brightness/contrast.

  Args:
    inputs: a batch of `pretrain_dataset` with `config.synthesis.placement="accelerator"`:
      `clip` uint8 `[B, T, H, W, 3]`, `boxes` `[B, N, T, 4]` and the `STAGE_KEYS`.
  Returns:
    float32 `[B, T, H, W, 3]` of whole grey levels 0..255: what the "input" placement yields
    (as uint8) for the same seeds, within one grey level.
  """
  clip = paste_patches(inputs["clip"], inputs["boxes"], inputs["synth_source"],
                       inputs["synth_mask"], inputs["synth_soft"], inputs["synth_d0"],
                       inputs["synth_alpha"])
  clip = hue_saturation(clip, inputs["colour_hue_apply"], inputs["colour_hue"],
                        inputs["colour_log_sat"])
  return brightness_contrast(clip, inputs["colour_shift"], inputs["colour_alpha"])
