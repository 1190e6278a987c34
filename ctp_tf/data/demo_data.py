"""The embedded demo set: short real video files whose class is decided only by motion.

Each video shows one main object on a cluttered background plus 1-3 distractors that wander at
random. The background is a mosaic of many small, differently textured regions with a few static
shapes, non-repeating at the scale objects move, as real scenes are: CtP cuts its patches from the clip itself, and on one uniform texture a
patch pasted elsewhere is invisible (the first version of this set had exactly that problem, and
the pretext task could not be learned on it). The class is how the main object moves (left, right, up, down, grow, shrink, circle
clockwise or counter-clockwise); textures, colours, shapes, sizes, start positions and speeds
are drawn at random for every video from the same distributions for every class. So nothing
that a single frame shows tells the class apart: a model must follow the object over time,
which is what a tracking pretext task such as CtP should teach.

Files are real encoded video (H.264 MP4 via libx264 and MJPEG AVI, mixed) in the UCF-101 layout
(`videos/<Class>/v_<Class>_gXX_cYY.{mp4,avi}`, `classInd.txt`, `trainlist01.txt`,
`testlist01.txt`), so the demo goes through the same conversion path as real data.
`demo_meta.json` records every video's main-object trajectory (centres and sizes per frame).

Example:
  from ctp_tf.data import demo_data
  summary = demo_data.make_demo_data("/tmp/demo", seed=0)
  # then: scripts/make_tfrecords.py --dataset=ucf101 --video_dir=/tmp/demo/videos \
  #   --split_dir=/tmp/demo --out_dir=/tmp/demo_tfrecords --resize_short=0
"""

import json
import math
import os
import sys
import time

import av
import numpy as np

CLASSES = ("MoveRight", "MoveLeft", "MoveUp", "MoveDown", "Grow", "Shrink", "CircleClockwise",
           "CircleCounterClockwise")
META_FILE = "demo_meta.json"
VERSION = 2                  # bump when the rendered videos change: caches are remade
CLIPS_PER_GROUP = 4          # UCF-101 style: videos of a group share the split


def _defaults():
  return dict(train_per_class=24, test_per_class=8, width=128, height=96, min_frames=40,
              max_frames=64, fps=25, mp4_fraction=0.5)


# ------------------------------------------------------------------------------------- textures

def _random_colour(rng):
  return rng.uniform(0, 255, size=3)


def make_texture(rng, height, width):
  """A random texture: noise, stripes, checker or smooth colour blobs, in random colours."""
  kind = rng.choice(["noise", "stripes", "checker", "blobs"])
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  if kind == "noise":
    # Low-frequency noise upsampled, plus fine grain: visible structure at every scale.
    cell = int(rng.integers(2, 7))
    coarse = rng.uniform(0, 1, size=(height // cell + 2, width // cell + 2, 1))
    coarse = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:height, :width]
    t = 0.75 * coarse + 0.25 * rng.uniform(0, 1, size=(height, width, 1))
    c0, c1 = _random_colour(rng), _random_colour(rng)
    img = c0 * (1 - t) + c1 * t
  elif kind == "stripes":
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(4, 14)
    phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
    t = (0.5 + 0.5 * np.sin(phase))[..., None]
    img = _random_colour(rng) * (1 - t) + _random_colour(rng) * t
  elif kind == "checker":
    cell = rng.uniform(3, 10)
    angle = rng.uniform(0, math.pi / 2)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    t = ((np.floor(u / cell) + np.floor(v / cell)) % 2)[..., None]
    img = _random_colour(rng) * (1 - t) + _random_colour(rng) * t
  else:
    img = np.broadcast_to(_random_colour(rng), (height, width, 3)).copy()
    for _ in range(int(rng.integers(3, 7))):
      cx, cy = rng.uniform(0, width), rng.uniform(0, height)
      s = rng.uniform(0.15, 0.5) * max(height, width)
      w = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))[..., None]
      img = img * (1 - w) + _random_colour(rng) * w
  return np.clip(img, 0, 255).astype(np.float32)


def make_scene(rng, height, width):
  """A static background: 16-40 regions (Voronoi cells) of different textures and 1-3 shapes.

  Small regions matter: a CtP patch is cut from near its own path, so on a texture that looks
  alike a few pixels away (one region, stripes, checkers) it cannot be seen once pasted.
  """
  k = int(rng.integers(16, 41))
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  seeds = rng.uniform(0, 1, size=(k, 2)) * (width, height)
  dist = (xx[None] - seeds[:, 0, None, None]) ** 2 + (yy[None] - seeds[:, 1, None, None]) ** 2
  cell = np.argmin(dist, axis=0)
  img = np.zeros((height, width, 3), np.float32)
  for i in range(k):
    img = np.where((cell == i)[..., None], make_texture(rng, height, width), img)
  short = min(height, width)
  for _ in range(int(rng.integers(1, 4))):
    hx, hy = rng.uniform(0.05, 0.14, size=2) * short
    tex = make_texture(rng, int(2 * hy) + 2, int(2 * hx) + 2)
    _paste(img, tex, rng.uniform(0, width), rng.uniform(0, height), hx, hy,
           rng.choice(["rect", "ellipse", "diamond"]))
  return img


# ------------------------------------------------------------------------------- trajectories

def _main_trajectory(rng, cls, t, width, height):
  """Centres [T, 2] (x, y) and scale [T] of the main object for class `cls`; half size `r`.

  Every class draws the object's (geometric mean) size from the same range, so its size in a
  frame says little about the class; only the change over time does.
  """
  short = min(width, height)
  steps = np.arange(t, dtype=np.float64)
  margin = 2.0
  r = rng.uniform(0.07, 0.1) * short
  if cls in ("Grow", "Shrink"):
    ratio = rng.uniform(1.8, 2.6)
    scale = np.exp(np.linspace(-0.5, 0.5, t) * math.log(ratio))
    if cls == "Shrink":
      scale = scale[::-1]
    ext = r * math.sqrt(ratio) * 1.25
    cx = rng.uniform(ext + margin, width - ext - margin)
    cy = rng.uniform(ext + margin, height - ext - margin)
    drift = rng.uniform(-0.1, 0.1, size=2)  # a slow drift, far below the movers' speeds
    centres = np.stack([cx + drift[0] * steps, cy + drift[1] * steps], 1)
    return centres, scale, r
  if cls.startswith("Circle"):
    radius = rng.uniform(0.18, 0.28) * short
    ext = radius + r * 1.25 + margin
    cx = rng.uniform(ext, width - ext)
    cy = rng.uniform(ext, height - ext)
    turns = rng.uniform(0.9, 1.6)  # over the whole video
    omega = 2 * math.pi * turns / (t - 1)
    # Image y points down, so a growing angle runs clockwise on screen.
    sign = 1.0 if cls == "CircleClockwise" else -1.0
    theta = rng.uniform(0, 2 * math.pi) + sign * omega * steps
    centres = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], 1)
    return centres, np.ones(t), r
  ext = r * 1.25 + margin
  axis = 0 if cls in ("MoveRight", "MoveLeft") else 1
  length = (width, height)[axis]
  room = length - 2 * ext
  travel = rng.uniform(0.55, 0.95) * room
  start = rng.uniform(ext, length - ext - travel)
  along = start + travel * steps / (t - 1)
  if cls in ("MoveLeft", "MoveUp"):
    along = 2 * start + travel - along  # same range, reversed direction
  other_len = (height, width)[axis]
  across = rng.uniform(ext, other_len - ext)
  slope = rng.uniform(-0.12, 0.12) * travel / (t - 1)  # a slight slant, not a pure axis
  across = np.clip(across + slope * (steps - t / 2), ext, other_len - ext)
  centres = np.stack([along, across], 1) if axis == 0 else np.stack([across, along], 1)
  return centres, np.ones(t), r


def _random_walk(rng, t, width, height, r):
  pos = np.array([rng.uniform(r, width - r), rng.uniform(r, height - r)])
  vel = rng.normal(0, 1.0, size=2)
  log_s, centres, scales = 0.0, [], []
  for _ in range(t):
    centres.append(pos.copy())
    scales.append(math.exp(log_s))
    vel = 0.85 * vel + rng.normal(0, 0.6, size=2)
    speed = np.linalg.norm(vel)
    if speed > 2.0:
      vel *= 2.0 / speed
    pos = pos + vel
    for k, lim in ((0, width), (1, height)):  # bounce off the borders
      if pos[k] < r or pos[k] > lim - r:
        vel[k] = -vel[k]
        pos[k] = np.clip(pos[k], r, lim - r)
    log_s = float(np.clip(log_s + rng.normal(0, 0.02), -0.3, 0.3))
  return np.array(centres), np.array(scales)


def video_spec(seed, class_index, video_index, *, width, height, min_frames, max_frames,
               mp4_fraction, **_):
  """Everything random about one video, drawn from its own seed (so any subset regenerates)."""
  rng = np.random.default_rng([int(seed), int(class_index), int(video_index)])
  cls = CLASSES[class_index]
  t = int(rng.integers(min_frames, max_frames + 1))
  centres, scale, r = _main_trajectory(rng, cls, t, width, height)
  aspect = rng.uniform(0.7, 1.4)
  main = {"centres": centres, "scale": scale, "half": (r * math.sqrt(aspect), r / math.sqrt(
      aspect)), "shape": rng.choice(["rect", "ellipse", "diamond"]), "tex_seed": rng.integers(
          1 << 31)}
  distractors = []
  for _ in range(int(rng.integers(1, 4))):
    rd = rng.uniform(0.4, 0.8) * r
    c, s = _random_walk(rng, t, width, height, rd)
    a = rng.uniform(0.7, 1.4)
    distractors.append({"centres": c, "scale": s, "half": (rd * math.sqrt(a), rd / math.sqrt(a)),
                        "shape": rng.choice(["rect", "ellipse", "diamond"]),
                        "tex_seed": rng.integers(1 << 31), "on_top": bool(rng.random() < 0.5)})
  return {"class": cls, "frames": t, "main": main, "distractors": distractors,
          "bg_seed": rng.integers(1 << 31), "format": "mp4" if rng.random() < mp4_fraction
          else "avi", "width": width, "height": height}


def classify_trajectory(centres, scale):
  """The class implied by a main-object trajectory alone (no appearance): the label's check."""
  centres = np.asarray(centres, np.float64)
  scale = np.asarray(scale, np.float64)
  log_ratio = math.log(scale[-1] / scale[0])
  if abs(log_ratio) > 0.3:
    return "Grow" if log_ratio > 0 else "Shrink"
  steps = np.diff(centres, axis=0)
  path = np.linalg.norm(steps, axis=1).sum()
  net = centres[-1] - centres[0]
  if path > 0 and np.linalg.norm(net) / path > 0.8:
    if abs(net[0]) >= abs(net[1]):
      return "MoveRight" if net[0] > 0 else "MoveLeft"
    return "MoveDown" if net[1] > 0 else "MoveUp"
  rel = centres - centres.mean(0)
  swept = np.unwrap(np.arctan2(rel[:, 1], rel[:, 0]))
  turn = swept[-1] - swept[0]
  if abs(turn) > math.pi:
    return "CircleClockwise" if turn > 0 else "CircleCounterClockwise"
  return "Unknown"


# ------------------------------------------------------------------------------------ rendering

def _paste(frame, tex, cx, cy, hx, hy, shape):
  """Alpha-blends a textured shape centred at (cx, cy) with half sizes (hx, hy) into frame."""
  h, w = frame.shape[:2]
  x0, x1 = max(0, int(math.floor(cx - hx - 1))), min(w, int(math.ceil(cx + hx + 1)))
  y0, y1 = max(0, int(math.floor(cy - hy - 1))), min(h, int(math.ceil(cy + hy + 1)))
  if x1 <= x0 or y1 <= y0:
    return
  u = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) / hx
  v = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) / hy
  uu, vv = np.meshgrid(u, v)
  if shape == "rect":
    d = np.maximum(np.abs(uu), np.abs(vv))
  elif shape == "ellipse":
    d = np.sqrt(uu * uu + vv * vv)
  else:
    d = np.abs(uu) + np.abs(vv)
  # About one pixel of soft edge: sub-pixel moves show at the boundary instead of jumping.
  alpha = np.clip((1.0 - d) * min(hx, hy), 0.0, 1.0)[..., None]
  th, tw = tex.shape[:2]
  # The texture is attached to the object (moves and scales with it).
  ti = np.clip(((vv + 1) * 0.5 * (th - 1)).round().astype(np.int32), 0, th - 1)
  tj = np.clip(((uu + 1) * 0.5 * (tw - 1)).round().astype(np.int32), 0, tw - 1)
  region = frame[y0:y1, x0:x1]
  frame[y0:y1, x0:x1] = region * (1 - alpha) + tex[ti, tj] * alpha


def _object_texture(seed, hx, hy, scale_max):
  rng = np.random.default_rng(int(seed))
  return make_texture(rng, max(4, int(2 * hy * scale_max) + 2), max(4, int(2 * hx * scale_max) + 2))


def render_video(spec):
  """uint8 [T, H, W, 3] frames of a `video_spec`."""
  h, w, t = spec["height"], spec["width"], spec["frames"]
  background = make_scene(np.random.default_rng(int(spec["bg_seed"])), h, w)
  objects = []
  for obj, on_top in [*[(d, d["on_top"]) for d in spec["distractors"] if not d["on_top"]],
                      (spec["main"], None),
                      *[(d, True) for d in spec["distractors"] if d["on_top"]]]:
    tex = _object_texture(obj["tex_seed"], *obj["half"], float(np.max(obj["scale"])))
    objects.append((obj, tex))
  frames = np.empty((t, h, w, 3), np.uint8)
  for i in range(t):
    frame = background.copy()
    for obj, tex in objects:
      s = obj["scale"][i]
      cx, cy = obj["centres"][i]
      _paste(frame, tex, cx, cy, obj["half"][0] * s, obj["half"][1] * s, obj["shape"])
    frames[i] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
  return frames


def write_video(path, frames, *, fps=25, fmt=None):
  """Encodes frames to H.264 MP4 or MJPEG AVI (by extension), via a temporary name + rename."""
  fmt = fmt or os.path.splitext(path)[1].lstrip(".")
  tmp = f"{path}.tmp-{os.getpid()}"
  h, w = frames.shape[1:3]
  with av.open(tmp, "w", format="mp4" if fmt == "mp4" else "avi") as container:
    if fmt == "mp4":
      # One thread and fixed settings: the same seed gives the same bytes.
      stream = container.add_stream("libx264", rate=fps, options={
          "crf": "18", "preset": "veryfast", "threads": "1"})
      stream.pix_fmt = "yuv420p"
    else:
      stream = container.add_stream("mjpeg", rate=fps)
      stream.pix_fmt = "yuvj420p"
      stream.codec_context.qmin = stream.codec_context.qmax = 3  # near-lossless MJPEG
    stream.width, stream.height = w, h
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  os.replace(tmp, path)


def _write_text_atomic(path, text):
  if os.path.exists(path):
    with open(path) as f:
      if f.read() == text:
        return False
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return True


def video_name(cls, index):
  return f"v_{cls}_g{index // CLIPS_PER_GROUP + 1:02d}_c{index % CLIPS_PER_GROUP + 1:02d}"


def stored_version(out_dir):
  """VERSION of the demo data in `out_dir` (1 if its meta predates versions), None if none."""
  path = os.path.join(out_dir, META_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f).get("version", 1)


def make_demo_data(out_dir, *, seed=0, progress=True, **sizes):
  """Writes the demo set into `out_dir`; existing complete files are kept (a re-run is a no-op).

  Args:
    out_dir: destination; gets `videos/`, `classInd.txt`, `trainlist01.txt`, `testlist01.txt`,
      `demo_meta.json`.
    seed: everything random derives from it.
    **sizes: train_per_class (24), test_per_class (8), width (128), height (96),
      min_frames (40), max_frames (64), fps (25), mp4_fraction (0.5).

  Returns:
    dict: videos, written, frames, seconds, classes.
  """
  cfg = _defaults()
  unknown = set(sizes) - set(cfg)
  if unknown:
    raise TypeError(f"unknown demo data options {sorted(unknown)}; known: {sorted(cfg)}")
  cfg.update(sizes)
  if cfg["width"] % 2 or cfg["height"] % 2:
    raise ValueError(f"width and height must be even (H.264 4:2:0), got {cfg['width']}x"
                     f"{cfg['height']}")
  if not 8 <= cfg["min_frames"] <= cfg["max_frames"]:
    raise ValueError(f"need 8 <= min_frames <= max_frames, got {cfg['min_frames']}, "
                     f"{cfg['max_frames']}")
  if min(cfg["width"], cfg["height"]) < 32:
    raise ValueError("width and height must be at least 32 (room for the motions)")
  start = time.time()
  # Test videos take the first groups, as UCF-101's split 1 does (groups never straddle splits).
  test_count = math.ceil(cfg["test_per_class"] / CLIPS_PER_GROUP) * CLIPS_PER_GROUP
  old = stored_version(out_dir)
  if old not in (None, VERSION):
    raise ValueError(f"{out_dir} holds demo data version {old}, this is version {VERSION}; "
                     "delete it or choose another directory")
  meta = {"version": VERSION, "seed": int(seed), "config": cfg, "classes": list(CLASSES), "videos": []}
  train_lines, test_lines = [], []
  written = frames_total = 0
  total = len(CLASSES) * (cfg["train_per_class"] + cfg["test_per_class"])
  for c, cls in enumerate(CLASSES):
    os.makedirs(os.path.join(out_dir, "videos", cls), exist_ok=True)
    indices = [*range(cfg["test_per_class"]),
               *range(test_count, test_count + cfg["train_per_class"])]
    for i in indices:
      spec = video_spec(seed, c, i, **cfg)
      rel = f"{cls}/{video_name(cls, i)}.{spec['format']}"
      path = os.path.join(out_dir, "videos", rel)
      split = "test" if i < test_count else "train"
      if split == "test":
        test_lines.append(f"{rel}\n")
      else:
        train_lines.append(f"{rel} {c + 1}\n")
      if not os.path.exists(path):
        write_video(path, render_video(spec), fps=cfg["fps"], fmt=spec["format"])
        written += 1
      frames_total += spec["frames"]
      meta["videos"].append({
          "path": f"videos/{rel}", "class": cls, "label": c, "split": split,
          "frames": spec["frames"], "format": spec["format"],
          "centres": np.round(spec["main"]["centres"], 2).tolist(),
          "scale": np.round(spec["main"]["scale"], 4).tolist(),
          "num_distractors": len(spec["distractors"])})
      done = len(meta["videos"])
      # In place on a terminal; in logs only every tenth of the way.
      if progress and (sys.stderr.isatty() or done == total or done % max(1, total // 10) == 0):
        end = "\n" if done == total or not sys.stderr.isatty() else ""
        sys.stderr.write(f"\rdemo data: {done}/{total} videos{end}")
        sys.stderr.flush()
  _write_text_atomic(os.path.join(out_dir, "classInd.txt"),
                     "".join(f"{c + 1} {cls}\n" for c, cls in enumerate(CLASSES)))
  _write_text_atomic(os.path.join(out_dir, "trainlist01.txt"), "".join(train_lines))
  _write_text_atomic(os.path.join(out_dir, "testlist01.txt"), "".join(test_lines))
  _write_text_atomic(os.path.join(out_dir, META_FILE), json.dumps(meta))
  return {"videos": len(meta["videos"]), "written": written, "frames": frames_total,
          "seconds": round(time.time() - start, 2), "classes": len(CLASSES),
          "out_dir": out_dir}
