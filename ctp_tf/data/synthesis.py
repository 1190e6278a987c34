"""Catch-the-Patch trajectory synthesis as pure, stateless TensorFlow.

`synthesize_trajectories(clip, seed)` pastes N patches cut from the clip itself along random
box trajectories (REFERENCE.md "Trajectory synthesis") and returns the edited clip with the
boxes the network must regress.

How it stays fast and tf.data friendly:
- All random numbers of a clip come from ONE `stateless_uniform` call of shape `[B, N, D]`
  that is then sliced into fields; categorical and integer draws are derived from uniforms.
  Few ops means little per-clip dispatch overhead inside a tf.data map.
- Everything is vectorised over a batch of clips B, trajectories N and frames T. Trace-time
  Python loops run only over the (at most `len(inner_keyframe_probs) + 1`) key-frame slots of
  the location random walk, whose clipping is inherently sequential, and over the N (static,
  default 3) trajectories to give each its own patch-window size.
- The patch of each trajectory in every frame is rendered in a small window the size of that
  trajectory's largest box (not the whole frame), separably: two gathers of whole source
  columns and a lerp, one transpose, two gathers of whole rows and a lerp; taps are clamped to
  the source patch, which is OpenCV's / `tf.image.resize`'s half-pixel bilinear resize of the
  cropped patch. No `crop_and_resize` (it cost ~5 ns per output value on one core).
- Layers are composited in paste order ("over"), layer after layer, each inside its window
  only, on the uint8 clip viewed as a `[T*H, W*3]` matrix: one split along rows gives the
  rows between windows and each frame's window rows; those split into left, window and right
  parts; the window part is blended in float with the patch, rounded, and the pieces are
  concatenated back (one clip-sized uint8 copy per layer). Where an earlier layer's window
  lies under a later one, the later layer adds that layer's rounding residuals back (one
  `ExtractGlimpse` per earlier layer), so it blends onto exactly the float values a float
  composite would hold, and the pixels equal a float composite rounded once at the end.
  No per-pixel gathers or scatters (TensorFlow spends ~3-5 ns per index on those, more than
  on the arithmetic), no clip-sized float tensors and no broadcast over the channels (the
  alpha mask is built per value of a row). The index arithmetic of all layers is computed at
  once and sliced per layer; the alpha mask runs only the layer's shape (`tf.switch_case`).
  A batch is pasted one clip at a time (`tf.map_fn`): whole-batch passes miss the caches
  (measured 2.5x more CPU per clip at B = 32 than clip by clip), and the result is then
  exactly the per-clip one.
  One-core cost per 16x112x112 clip with 3 patches, measured by ablation inside the tf.data
  map (machine loaded, float-clip version of this compositing): ~2.8 ms, of which the patch
  resize ~0.8 ms and the compositing (splits, blend, concatenation) ~1.0 ms for the 3 layers;
  draws, trajectories, index arithmetic and alpha masks the rest.

`synthesize_batch` is the same computation for a batch of clips whose random numbers were drawn
per clip (`draw_randoms`), so the input pipeline can synthesise after batching and still give
exactly the per-clip result of `synthesize_trajectories(clip, seed)`.
"""

import math

import tensorflow as tf

from ctp_tf import defaults

_INTERP_LINEAR, _INTERP_ACCEL, _INTERP_DECEL = 0, 1, 2
_MASK_RECT, _MASK_ELLIPSE, _MASK_RHOMBUS = 0, 1, 2


def default_config():
  return defaults.synthesis_config()


def _check_config(c):
  def _probs(name, p):
    if not p or any(x < 0 for x in p) or abs(sum(p) - 1.0) > 1e-4:
      raise ValueError(f"synthesis config {name}={tuple(p)} must be non-negative and sum to 1")
  _probs("inner_keyframe_probs", c.inner_keyframe_probs)
  _probs("interpolation_probs", c.interpolation_probs)
  if len(c.interpolation_probs) != 3:
    raise ValueError("synthesis config interpolation_probs needs 3 entries "
                     "(linear, accelerating, decelerating)")
  _probs("mask_probs", c.mask_probs)
  if len(c.mask_probs) != 3:
    raise ValueError("synthesis config mask_probs needs 3 entries (rectangle, ellipse, rhombus)")
  if c.num_trajectories < 1:
    raise ValueError(f"synthesis config num_trajectories={c.num_trajectories} must be >= 1")
  if not 0.0 <= c.visible_prob <= 1.0:
    raise ValueError(f"synthesis config visible_prob={c.visible_prob} must lie in [0, 1]")
  if c.speed < 0 or c.scale_rate < 0 or c.size_jitter < 0:
    raise ValueError("synthesis config speed, scale_rate and size_jitter must be >= 0")
  lo, hi = c.soft_edge_range
  if not 0.0 <= lo <= hi < 0.5:
    raise ValueError(f"synthesis config soft_edge_range={(lo, hi)} must satisfy 0 <= lo <= hi < 0.5")


class _Layout:
  """Column layout of the per-trajectory uniform random numbers."""

  def __init__(self, config, num_frames):
    self.k_inner = len(config.inner_keyframe_probs) - 1   # most inner key frames
    self.k_max = self.k_inner + 2                        # key-frame slots incl. first and last
    self.fields = {}
    offset = 0
    for name, width in [
        ("anchor", 1), ("jitter", 2), ("topleft", 2),
        ("key_count", 3), ("key_jitter", 3 * self.k_inner),   # location, size, opacity
        ("shift", 2 * (self.k_max - 1)), ("loc_mode", self.k_max - 1),
        ("scale", 2 * (self.k_max - 1)), ("size_mode", self.k_max - 1),
        ("opacity", self.k_max), ("source", 1), ("mask", 1), ("soft", 1), ("d0", 1),
        ("visible", num_frames)]:
      self.fields[name] = (offset, width)
      offset += width
    self.width = offset

  def take(self, u, name):
    start, width = self.fields[name]
    return u[..., start:start + width]


def num_random_columns(config, num_frames):
  return _Layout(config, num_frames).width


def draw_randoms(seed, config, num_frames):
  """The uniform random numbers of one clip: float32 `[N, D]` from a stateless seed."""
  layout = _Layout(config, num_frames)
  seed = tf.convert_to_tensor(seed)
  return tf.random.stateless_uniform([config.num_trajectories, layout.width], seed=seed)


def _categorical(u, probs):
  """Index drawn with the given probabilities from uniforms `u` (inverse CDF)."""
  cdf = []
  acc = 0.0
  for p in probs[:-1]:
    acc += p
    cdf.append(acc)
  if not cdf:
    return tf.zeros(tf.shape(u), tf.int32)
  return tf.reduce_sum(tf.cast(u[..., None] >= tf.constant(cdf, tf.float32), tf.int32), -1)


def _key_frames(u_count, u_jitter, num_frames, probs, jitter_frac):
  """Key-frame times: first and last frame plus k jittered, evenly spaced inner frames.

  Args:
    u_count: uniforms `[...]` choosing k with `probs`.
    u_jitter: uniforms `[..., k_inner]` for the jitter of each inner key frame.
  Returns:
    times: int32 `[..., k_max]` sorted key-frame times, padded with the last frame (padding
      slots have zero duration, so random-walk steps over them are zero).
    slot: int32 `[..., T]` slot of the key frame at or before each frame.
    count: int32 `[...]` number of distinct key frames.
  """
  k_inner = u_jitter.shape[-1]
  k = _categorical(u_count, probs)                                # [...]
  kf = tf.cast(k, tf.float32)[..., None]
  i = tf.range(1, k_inner + 1, dtype=tf.float32)                  # [k_inner]
  avg = num_frames / (kf + 1.0)
  ticks = tf.floor(avg * i)
  jit = tf.floor(avg * jitter_frac)                              # +-jit frames, inclusive
  ticks += tf.floor(u_jitter * (2.0 * jit + 1.0)) - jit
  ticks = tf.clip_by_value(tf.cast(ticks, tf.int32), 0, num_frames - 1)
  # Inner slots beyond k point at frame 0, which is a key frame anyway.
  ticks = tf.where(i <= kf, ticks, 0)
  frames = tf.range(num_frames, dtype=tf.int32)
  is_key = tf.reduce_any(tf.equal(ticks[..., :, None], frames), axis=-2)
  is_key = is_key | tf.equal(frames, 0) | tf.equal(frames, num_frames - 1)
  k_max = k_inner + 2
  # Padded to k_max first so clips shorter than k_max frames still give k_max slots.
  times = tf.where(is_key, frames, num_frames - 1)
  pad = tf.fill(tf.concat([tf.shape(times)[:-1], [k_max]], 0), num_frames - 1)
  times = tf.sort(tf.concat([times, pad], -1), axis=-1)[..., :k_max]
  slot = tf.cumsum(tf.cast(is_key, tf.int32), axis=-1) - 1
  count = tf.reduce_sum(tf.cast(is_key, tf.int32), -1)
  return times, slot, count


def _interpolate(values, times, slot, modes, num_frames):
  """Per-frame values between key frames.

  Args:
    values: `[..., k_max, C]` values at key slots.
    times: int32 `[..., k_max]`; slot: int32 `[..., T]`.
    modes: int32 `[..., k_max - 1]` interpolation of each segment (or None: linear).
  Returns: `[..., T, C]`.
  """
  k_max = times.shape[-1]
  batch_dims = slot.shape.rank - 1
  nxt = tf.minimum(slot + 1, k_max - 1)
  p = tf.cast(tf.gather(times, slot, batch_dims=batch_dims), tf.float32)
  q = tf.cast(tf.gather(times, nxt, batch_dims=batch_dims), tf.float32)
  t = tf.range(num_frames, dtype=tf.float32)
  r = (t - p) / tf.maximum(q - p, 1.0)                            # [..., T] in [0, 1]
  if modes is not None:
    m = tf.gather(modes, tf.minimum(slot, k_max - 2), batch_dims=batch_dims)
    r = tf.where(tf.equal(m, _INTERP_ACCEL), r * r, tf.where(tf.equal(m, _INTERP_DECEL), 1.0 - (1.0 - r) ** 2, r))
  vp = tf.gather(values, slot, batch_dims=batch_dims)
  vq = tf.gather(values, nxt, batch_dims=batch_dims)
  return vp + (vq - vp) * r[..., None]


def _anchors(config):
  ws, hs = [], []
  for r in config.ratios:
    for s in config.scales:
      ws.append(s * math.sqrt(r))
      hs.append(s / math.sqrt(r))
  return tf.constant(ws, tf.float32), tf.constant(hs, tf.float32)


def _trajectories(u, config, num_frames, height, width):
  """Boxes and per-frame paste parameters from the uniforms `u` `[B, N, D]`."""
  lay = _Layout(config, num_frames)
  k_max = lay.k_max
  take = lambda name: lay.take(u, name)
  size_hi = tf.constant([width - 1.0, height - 1.0])
  frame_wh = tf.constant([float(width), float(height)])

  # Start box: anchor (scale x ratio) with independent log-uniform jitter of each side.
  anchor_w, anchor_h = _anchors(config)
  num_anchors = anchor_w.shape[0]
  anchor = tf.minimum(tf.cast(take("anchor")[..., 0] * num_anchors, tf.int32), num_anchors - 1)
  anchor_wh = tf.stack([tf.gather(anchor_w, anchor), tf.gather(anchor_h, anchor)], -1)
  jitter = (2.0 * take("jitter") - 1.0) * config.size_jitter
  wh0 = tf.clip_by_value(anchor_wh * tf.exp(jitter), 1.0, size_hi)         # [B, N, 2]
  xy0 = take("topleft") * (frame_wh - wh0)
  ctr0 = xy0 + 0.5 * wh0

  # Key frames for location, size and opacity, each drawn independently.
  kt, kslot, kcount = _key_frames(
      take("key_count"), tf.reshape(take("key_jitter"), tf.concat([tf.shape(u)[:-1], [3, lay.k_inner]], 0)),
      num_frames, config.inner_keyframe_probs, config.keyframe_jitter)
  loc_t, size_t, opa_t = kt[..., 0, :], kt[..., 1, :], kt[..., 2, :]
  loc_slot, size_slot, opa_slot = kslot[..., 0, :], kslot[..., 1, :], kslot[..., 2, :]

  # Location: a clipped random walk of the centre over the key frames (speed constraint).
  # Clipping uses the start size, as in the public release; final boxes are clipped to the
  # frame anyway. The walk over key slots is sequential because of the clipping.
  dt_loc = tf.cast(loc_t[..., 1:] - loc_t[..., :-1], tf.float32)           # [B, N, k_max-1]
  shift = (2.0 * tf.reshape(take("shift"), tf.concat([tf.shape(u)[:-1], [k_max - 1, 2]], 0))
           - 1.0) * config.speed * dt_loc[..., None]
  lo, hi = 0.5 * wh0, frame_wh - 0.5 * wh0
  ctrs = [ctr0]
  c = ctr0
  for j in range(k_max - 1):
    c = tf.clip_by_value(c + shift[..., j, :], lo, hi)
    ctrs.append(c)
  key_ctr = tf.stack(ctrs, -2)                                              # [B, N, k_max, 2]

  # Size: log-uniform steps (scale constraint); no clipping, so a cumulative sum.
  dt_size = tf.cast(size_t[..., 1:] - size_t[..., :-1], tf.float32)
  log_step = (2.0 * tf.reshape(take("scale"), tf.concat([tf.shape(u)[:-1], [k_max - 1, 2]], 0))
              - 1.0) * config.scale_rate * dt_size[..., None]
  log_step = tf.concat([tf.zeros_like(log_step[..., :1, :]), log_step], -2)
  key_wh = wh0[..., None, :] * tf.exp(tf.cumsum(log_step, axis=-2))       # [B, N, k_max, 2]

  loc_mode = _categorical(take("loc_mode"), config.interpolation_probs)
  size_mode = _categorical(take("size_mode"), config.interpolation_probs)
  ctr = _interpolate(key_ctr, loc_t, loc_slot, loc_mode, num_frames)      # [B, N, T, 2]
  wh = _interpolate(key_wh, size_t, size_slot, size_mode, num_frames)

  lo_opa, hi_opa = config.opacity_range
  key_opacity = lo_opa + (hi_opa - lo_opa) * take("opacity")
  opacity = _interpolate(key_opacity[..., None], opa_t, opa_slot, None, num_frames)[..., 0]

  # Whole pixels inside the frame, at least one pixel wide.
  p1 = tf.clip_by_value(tf.round(ctr - 0.5 * wh), 0.0, frame_wh - 1.0)
  p2 = tf.clip_by_value(tf.round(ctr + 0.5 * wh), p1 + 1.0, frame_wh)
  boxes = tf.concat([p1, p2], -1)                                           # [B, N, T, 4]

  source = tf.minimum(tf.cast(take("source")[..., 0] * num_frames, tf.int32), num_frames - 1)
  frames = tf.range(num_frames)
  visible = ((take("visible") < config.visible_prob) | tf.equal(frames, 0)
             | tf.equal(frames, source[..., None]))
  mask = _categorical(take("mask")[..., 0], config.mask_probs)
  soft = take("soft")[..., 0] < config.soft_edge_prob
  d_lo, d_hi = config.soft_edge_range
  d0 = d_lo + (d_hi - d_lo) * take("d0")[..., 0]
  return {
      "boxes": boxes, "visible": visible, "opacity": opacity, "source": source,
      "mask": mask, "soft": soft, "d0": d0,
      # Internals, for tests and visualisation.
      "anchor": anchor, "start_wh": wh0, "start_ctr": ctr0,
      "loc_times": loc_t, "loc_count": kcount[..., 0], "key_ctr": key_ctr, "loc_mode": loc_mode,
      "size_times": size_t, "size_count": kcount[..., 1], "key_wh": key_wh,
      "size_mode": size_mode, "opacity_times": opa_t, "opacity_count": kcount[..., 2],
      "ctr": ctr, "wh": wh,
  }


def _paste(clips, traj, config, float_clip=False):
  """Pastes every trajectory's patches into ONE clip `[1, T, H, W, 3]` uint8.

  Returns uint8, or with `float_clip` float32 holding the same whole grey levels.

  Layer k (in paste order) works in a window the size of its largest box, placed in each frame
  at the box's top-left corner (moved up/left where it would leave the frame). The index
  arithmetic of all layers is computed at once (at the frame size, sliced per layer). The
  patch is resized separably: two gathers of whole source columns and a lerp, one transpose,
  two gathers of whole rows and a lerp. The alpha mask runs only the layer's shape
  (`tf.switch_case`). Compositing is "over" in paste order, layer after layer, on the uint8
  clip as a `[T*H, W*3]` matrix: it is split into the rows between windows and each frame's
  window rows, those into left, window and right parts; the window part is blended in float
  with the patch, rounded, and the pieces are concatenated back. The float value under a
  window is its uint8 value plus the rounding residual of the last earlier layer whose window
  covers the pixel (cut from that layer's residuals with one `ExtractGlimpse` at the relative
  offset of the windows), which is exactly the float value that layer computed: the
  arithmetic per value is that of a float composite rounded once at the end (the version
  with segment sums), so the pixels are the same.
  """
  t_len, height, width = clips.shape[1], clips.shape[2], clips.shape[3]
  n = config.num_trajectories
  boxes = traj["boxes"][0]                                                # [N, T, 4]
  x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
  bw, bh = x2 - x1, y2 - y1

  # Paste order: larger mean area first (the product of the mean sides, as the release does).
  area = tf.reduce_mean(bw, -1) * tf.reduce_mean(bh, -1)                  # [N]
  order = tf.argsort(area, axis=-1, direction="DESCENDING", stable=True)
  vis_alpha = tf.cast(traj["visible"][0], tf.float32) * traj["opacity"][0]   # [N, T]
  per_frame = tf.gather(tf.stack([x1, y1, bw, bh, vis_alpha], -1), order)   # [N, T, 5]
  x1, y1, bw, bh, vis = tf.unstack(per_frame, axis=-1)
  source = tf.gather(traj["source"][0], order)                            # [N]
  mask = tf.gather(traj["mask"][0], order)
  soft = tf.gather(traj["soft"][0], order)
  d0 = tf.gather(traj["d0"][0], order)
  # The source box: the layer's box in its source frame.
  src_box = tf.gather(per_frame[..., :4], source, batch_dims=1)           # [N, 4]
  sx1, sy1, sw, sh = tf.unstack(src_box, axis=-1)

  win_h = tf.reduce_max(bh, -1)                                           # [N]
  win_w = tf.reduce_max(bw, -1)
  # Window origin: the box corner, moved back into the frame; (dy, dx) the box in the window.
  oy = tf.minimum(y1, height - win_h[:, None])                            # [N, T]
  ox = tf.minimum(x1, width - win_w[:, None])
  dy, dx = y1 - oy, x1 - ox

  # Taps and alpha terms of every window row / column of every layer, at the frame size.
  # Window row j of frame t samples the patch at ((j - dy + 0.5) * sh / bh - 0.5), the same
  # floats as a window starting at the box (half-pixel bilinear, taps clamped to the patch).
  def axis_terms(src, extent, shift, steps, channels):
    pos = tf.range(float(steps))
    if channels > 1:        # one entry per value of a row: column x repeated per channel
      pos = tf.repeat(pos, channels)
    pos = (pos - shift[..., None]) + 0.5                                  # [N, T, S]
    c = pos * (src[:, None, None] / extent[..., None]) - 0.5
    c0 = tf.floor(c)
    limit = (src - 1.0)[:, None, None]
    i0 = tf.minimum(tf.maximum(c0, 0.0), limit)
    i1 = tf.minimum(tf.maximum(c0 + 1.0, 0.0), limit)
    norm = tf.abs(pos / extent[..., None] - 0.5)                         # |offset| / side
    return i0, i1, c - c0, norm

  r0, r1, fy, ny = axis_terms(sh, bh, dy, height, 1)                # [N, T, H]
  c0, c1, fx, nx = axis_terms(sw, bw, dx, width, 1)                 # [N, T, W]
  _, _, _, nx3 = axis_terms(sw, bw, dx, width, 3)                   # [N, T, W*3]
  # Alpha terms per layer: rectangle: the ramp of each axis (min of two ramps = ramp of the
  # max, exactly, as the ramp is monotone); ellipse: squares; rhombus: the distances.
  den = tf.where(soft, 0.5 - d0, 1e-30)                                   # [N]
  def ramp(dist):
    return (tf.clip_by_value((0.5 - dist) / den[:, None, None], 0.0, 1.0)
            * vis[..., None])
  is_rect = tf.equal(mask, _MASK_RECT)[:, None, None]
  is_ell = tf.equal(mask, _MASK_ELLIPSE)[:, None, None]
  row_a = tf.where(is_rect, ramp(ny), tf.where(is_ell, ny * ny, ny))      # [N, T, H]
  col_a = tf.where(is_rect, ramp(nx3), tf.where(is_ell, nx3 * nx3, nx3))  # [N, T, W*3]
  # Rows of the column-interpolated patch [T * sh, ww * 3] that each window row reads.
  row_base = tf.range(t_len, dtype=tf.float32)[:, None] * sh[:, None, None]   # [N, T, 1]
  r0, r1 = tf.cast(row_base + r0, tf.int32), tf.cast(row_base + r1, tf.int32)  # [N, T, H]
  c0, c1 = tf.cast(c0, tf.int32), tf.cast(c1, tf.int32)                       # [N, T, W]

  # Per-layer integers: window and source patch sizes, source corner, mask.
  ints = tf.cast(tf.stack([win_h, win_w, sh, sw, tf.cast(source, tf.float32), sy1, sx1], -1),
                 tf.int32)                                                # [N, 7]
  # Per frame: first frame row of the window in the [T*H, W*3] matrix, first value column.
  frame_rows = tf.range(t_len) * height
  starts = tf.stack([frame_rows + tf.cast(oy, tf.int32),
                     tf.cast(ox, tf.int32) * 3], -1)                       # [N, T, 2]
  pad_left = tf.cast(ox, tf.int32) * 3                                    # [N, T]

  # The clip stays uint8 [T*H, W*3]. Each layer blends its windows in float and writes them
  # back rounded, keeping their rounding residuals for the layers pasted after it.
  out = tf.reshape(clips[0], [t_len * height, width * 3])
  clip_u8 = clips[0]
  done = []                                   # residual windows and origins of earlier layers
  for k in range(n):
    wh, ww, s_h, s_w, src, s_y, s_x = tf.unstack(ints[k])
    # The source patch, columns first: [sw, sh * 3].
    patch = tf.slice(clip_u8, tf.stack([src, s_y, s_x, 0]), tf.stack([1, s_h, s_w, 3]))
    patch = tf.reshape(tf.transpose(tf.cast(patch[0], tf.float32), [1, 0, 2]),
                       tf.stack([s_w, s_h * 3]))
    left = tf.gather(patch, c0[k, :, :ww])                                # [T, ww, sh*3]
    right = tf.gather(patch, c1[k, :, :ww])
    cols = left + (right - left) * fx[k, :, :ww, None]
    cols = tf.transpose(tf.reshape(cols, tf.stack([t_len, ww, s_h, 3])), [0, 2, 1, 3])
    cols = tf.reshape(cols, tf.stack([t_len * s_h, ww * 3]))
    top = tf.gather(cols, r0[k, :, :wh])                                  # [T, wh, ww*3]
    bottom = tf.gather(cols, r1[k, :, :wh])
    window = top + (bottom - top) * fy[k, :, :wh, None]

    ra = row_a[k, :, :wh, None]                                           # [T, wh, 1]
    ca = col_a[k, :, None, :ww * 3]                                       # [T, 1, ww*3]
    dk, vk = den[k], vis[k][:, None, None]
    def soft_ramp(dist):
      return tf.clip_by_value((0.5 - dist) / dk, 0.0, 1.0) * vk
    alpha = tf.switch_case(mask[k], [
        lambda: tf.minimum(ra, ca),
        lambda: soft_ramp(tf.sqrt(ra + ca)),
        lambda: soft_ramp(ra + ca)])                                      # [T, wh, ww*3]

    # Rows of the clip: the gaps and each frame's window rows; the window rows split again
    # into left, window and right parts.
    row0 = starts[k, :, 0]                                                # [T]
    gaps = tf.concat([row0, [t_len * height]], 0) - tf.concat([[0], row0 + wh], 0)
    sizes = tf.reshape(tf.stack([gaps[:-1], tf.fill([t_len], wh)], 1), [-1])
    pieces = tf.split(out, tf.concat([sizes, gaps[-1:]], 0), num=2 * t_len + 1, axis=0)
    col_sizes = tf.unstack(tf.stack([pad_left[k], tf.fill([t_len], ww * 3),
                                     (width - ww) * 3 - pad_left[k]], -1))   # T x [3]
    parts = [tf.split(p, z, num=3, axis=1) for p, z in zip(pieces[1::2], col_sizes)]
    under = tf.cast(tf.stack([p[1] for p in parts]), tf.float32)          # [T, wh, ww*3]
    # Where earlier layers' windows cover this one, the clip holds their float values rounded:
    # add back the rounding residual of the last layer written there (exact: r + (x - r) = x).
    oy_k, ox_k = tf.cast(oy[k], tf.int32), tf.cast(ox[k], tf.int32)      # [T]
    resid = None
    for res_j, oy_j, ox_j, wh_j, ww_j in done:
      dy_j, dx_j = oy_k - oy_j, ox_k - ox_j                               # [T]
      centre = tf.cast(tf.stack([dy_j, dx_j], -1), tf.float32) + tf.cast(
          tf.stack([wh, ww]), tf.float32) / 2.0
      cut = tf.raw_ops.ExtractGlimpse(
          input=tf.reshape(res_j, tf.stack([t_len, wh_j, ww_j, 3])), size=tf.stack([wh, ww]),
          offsets=centre, centered=False, normalized=False, uniform_noise=False, noise="zero")
      cut = tf.reshape(cut, tf.shape(under))                              # 0 outside
      if resid is None:
        resid = cut
      else:
        rr = tf.range(wh) + dy_j[:, None]                                 # [T, wh]
        cc = tf.range(ww * 3) // 3 + dx_j[:, None]                        # [T, ww*3]
        inside = (((rr >= 0) & (rr < wh_j))[:, :, None]
                  & ((cc >= 0) & (cc < ww_j))[:, None, :])
        resid = tf.where(inside, cut, resid)
    if resid is not None:
      under = under + resid
    new = under + (window - under) * alpha                                # exact float values
    # A convex combination of uint8 values: rounding suffices, no clipping needed.
    new_r = tf.round(new)
    if k < n - 1:
      done.append((new - new_r, oy_k, ox_k, wh, ww))
    new = tf.unstack(tf.cast(new_r, tf.uint8))
    strips = [tf.concat([p[0], w, p[2]], 1) for p, w in zip(parts, new)]
    out = tf.concat([p for pair in zip(pieces[0::2], strips) for p in pair] + [pieces[-1]], 0)
  out = tf.reshape(out, tf.shape(clips))
  return tf.cast(out, tf.float32) if float_clip else out


_PASTE_KEYS = ("boxes", "visible", "opacity", "source", "mask", "soft", "d0")


def _paste_per_clip(clips, traj, config, float_clip=False):
  """`_paste` one clip at a time (`tf.map_fn` over the batch) when there is more than one.

  One clip at a time touches a clip's worth of memory per pass (the batch's frame-sized passes
  miss the caches) and composites layer after layer like `synthesize_trajectories`: measured
  on one core, batch 32, ~2.5x less CPU per clip than pasting the whole batch at once.
  """
  if clips.shape[0] == 1:
    return _paste(clips, traj, config, float_clip)
  parts = {k: traj[k] for k in _PASTE_KEYS}
  def one(args):
    clip, part = args
    return _paste(clip[None], {k: v[None] for k, v in part.items()}, config, float_clip)[0]
  return tf.map_fn(one, (clips, parts),
                   fn_output_signature=tf.TensorSpec(clips.shape[1:],
                                                     tf.float32 if float_clip else tf.uint8))


def synthesize_batch(clips, randoms, config=None, return_internals=False, float_clip=False):
  """CtP synthesis for a batch of clips with per-clip random numbers.

  Args:
    clips: uint8 `[B, T, H, W, 3]`.
    randoms: float32 `[B, N, D]`: `draw_randoms(seed_b, config, T)` of each clip.
    config: synthesis ConfigDict (default `ctp_tf.defaults.synthesis_config()`).
    return_internals: also return key frames and other internals (tests, visualisation).
    float_clip: return `clip` as float32 holding the same whole grey levels 0..255, which
      saves a uint8 round trip when float colour jitter follows (the pretraining pipeline).
  Returns:
    dict: `clip` uint8 `[B, T, H, W, 3]`, `boxes` float32 `[B, N, T, 4]` (x1, y1, x2, y2 in
    whole pixels), `visible` bool `[B, N, T]`, `weights` float32 `[B, N, T]`.
  """
  config = config or default_config()
  _check_config(config)
  clips = tf.convert_to_tensor(clips)
  if clips.dtype != tf.uint8 or clips.shape.rank != 5 or clips.shape[-1] != 3:
    raise ValueError(f"synthesize_batch wants uint8 [B, T, H, W, 3] clips, got {clips.dtype} "
                     f"{clips.shape}")
  t_len, height, width = clips.shape[1], clips.shape[2], clips.shape[3]
  if None in (t_len, height, width):
    raise ValueError(f"synthesis needs static T, H, W; got clip shape {clips.shape}")
  if t_len < 2 or height < 2 or width < 2:
    raise ValueError(f"synthesis needs at least 2 frames of at least 2x2 pixels, got {clips.shape}")
  traj = _trajectories(randoms, config, t_len, height, width)
  out = {
      "clip": _paste_per_clip(clips, traj, config, float_clip),
      "boxes": traj["boxes"],
      "visible": traj["visible"],
      # Hidden frames are still supervised (masked region model); kept as a field so a config
      # could weight them differently.
      "weights": tf.ones_like(traj["opacity"]),
  }
  if return_internals:
    out.update({k: v for k, v in traj.items() if k not in out})
  return out


def trajectory_batch(randoms, config, num_frames, height, width):
  """Boxes and paste parameters of a batch from its per-clip `draw_randoms` `[B, N, D]`.

  The host part of the "accelerator" placement: the same trajectories `synthesize_batch`
  computes, without touching pixels; `ctp_tf.layers.synthesis_stage.paste_patches` pastes them.
  Returns dict: `boxes` float32 `[B, N, T, 4]`, `visible` bool `[B, N, T]`, `alpha` float32
  `[B, N, T]` (opacity, 0 where hidden), `source`, `mask` int32 `[B, N]`, `soft` float32
  `[B, N]` (1: soft edge), `d0` float32 `[B, N]`.
  """
  config = config or default_config()
  _check_config(config)
  traj = _trajectories(tf.convert_to_tensor(randoms, tf.float32), config, int(num_frames),
                       int(height), int(width))
  return {"boxes": traj["boxes"], "visible": traj["visible"],
          "alpha": tf.cast(traj["visible"], tf.float32) * traj["opacity"],
          "source": traj["source"], "mask": traj["mask"],
          "soft": tf.cast(traj["soft"], tf.float32), "d0": traj["d0"]}


def synthesize_trajectories(clip, seed, config=None, return_internals=False):
  """Pastes `config.num_trajectories` moving patches into `clip` (Catch-the-Patch).

  Args:
    clip: uint8 `[T, H, W, 3]` (static T, H, W).
    seed: int32 `[2]` stateless seed; the same seed gives the same output everywhere.
    config: synthesis ConfigDict (default `ctp_tf.defaults.synthesis_config()`).
    return_internals: also return key frames, start boxes etc. (tests, visualisation).
  Returns:
    dict with `clip` uint8 `[T, H, W, 3]`, `boxes` float32 `[N, T, 4]` (x1, y1, x2, y2),
    `visible` bool `[N, T]`, `weights` float32 `[N, T]`.

  Example:
  >>> import numpy as np
  >>> clip = np.random.default_rng(0).integers(0, 255, (16, 112, 112, 3), dtype=np.uint8)
  >>> out = synthesize_trajectories(clip, seed=[1, 2])
  >>> out["clip"].shape, out["boxes"].shape, out["visible"].shape
  (TensorShape([16, 112, 112, 3]), TensorShape([3, 16, 4]), TensorShape([3, 16]))
  """
  config = config or default_config()
  clip = tf.convert_to_tensor(clip)
  if clip.shape.rank != 4:
    raise ValueError(f"synthesize_trajectories wants a [T, H, W, 3] clip, got {clip.shape}")
  randoms = draw_randoms(seed, config, clip.shape[0])
  out = synthesize_batch(clip[None], randoms[None], config, return_internals)
  return {k: v[0] for k, v in out.items()}
