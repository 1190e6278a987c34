"""The embedded demo set: short real video files whose class is decided only by motion.

Each video (version 4) looks like a small piece of video: a textured scene (a crop of one of
the photographs matplotlib ships, `grace_hopper.jpg` or the `topobathy.npz` terrain, or
multi-octave colour noise) seen by a camera that pans slowly in a random direction, one or two
small textured distractors that sit on the scene and drift, and one main object with a texture
of its own and an outline. The class is how the main object moves in the frame (left, right,
up, down, grow, shrink, circle clockwise or counter-clockwise); scenes, textures, shapes,
sizes, start positions, speeds and pans are drawn at random for every video from the same
distributions for every class. So nothing that a single frame shows tells the class apart: a
model must follow the object over time, which is what a tracking pretext task such as CtP
should teach.

Why every surface carries a fine grain (`make_texture`). CtP cuts each patch from the clip
itself, so a pasted patch looks like the video and shows only where its texture moves. With
photographs and noise carrying a weaker grain the demo pretraining stayed on the static guess
for 144-192 steps (camera pans move in whole pixels: a bilinear sub-pixel shift would blur the
grain differently in every frame, as if something moved everywhere); with the grain of
version 3 (2 px squares, ~100 grey levels) under the photograph's light and colour, and pans
in whole pixels, it leaves it within ~150 steps (README). Because the objects are textured
like the scene, following a pasted patch is the same skill as following the object.

Files are real encoded video (H.264 MP4 via libx264 and MJPEG AVI, mixed) in the UCF-101 layout
(`videos/<Class>/v_<Class>_gXX_cYY.{mp4,avi}`, `classInd.txt`, `trainlist01.txt`,
`testlist01.txt`), so the demo goes through the same conversion path as real data.
`demo_meta.json` records every video's main-object trajectory (centres and scales per frame,
half sizes): the boxes of the demo's zero-shot tracking stage.

Example:
  from ctp_tf.demo import data as demo_data
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
VERSION = 4                  # bump when the rendered videos change: caches are remade
CLIPS_PER_GROUP = 4          # UCF-101 style: videos of a group share the split


def default_sizes():
  """`make_demo_data`'s defaults (also those of scripts/make_demo_data.py)."""
  return dict(train_per_class=24, test_per_class=16, width=96, height=72, min_frames=40,
              max_frames=64, fps=25, mp4_fraction=0.5)


# ----------------------------------------------------------------------------------- textures

def _upsample(grid, height, width):
  """Bilinear upsampling of `grid` [h, w, C] to [height, width, C] (numpy only)."""
  gh, gw = grid.shape[:2]
  ys = np.linspace(0, gh - 1, height)
  xs = np.linspace(0, gw - 1, width)
  y0 = np.floor(ys).astype(int)
  x0 = np.floor(xs).astype(int)
  y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
  fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
  top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
  bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
  return top * (1 - fy) + bottom * fy


def noise_texture(rng, height, width, *, octaves=6, base_cells=3, persistence=0.8):
  """Multi-octave value noise in colour: float32 [height, width, 3] in [0, 255].

  Octave k is a random grid of base_cells * 2^k cells bilinearly upsampled, weighted by
  persistence^k: blobs at several scales with detail down to a few pixels, like the mix of
  surfaces in a video frame. Colours: a random palette mixes a luminance and two chroma noises.
  """
  total = np.zeros((height, width, 3), np.float64)
  weight = 0.0
  for k in range(octaves):
    cells = base_cells * 2 ** k
    grid = rng.uniform(-1, 1, size=(max(2, cells * height // max(height, width)) + 1,
                                    cells + 1, 3))
    w = persistence ** k
    total += w * _upsample(grid, height, width)
    weight += w
  total /= weight
  lum = total[..., :1]
  mix = rng.uniform(0.2, 0.6, size=(1, 1, 3))
  noise = lum * (1 - mix) + total * mix           # mostly luminance, some colour
  noise = (noise - noise.mean()) / (noise.std() + 1e-6)
  base = rng.uniform(70, 185, size=3)
  contrast = rng.uniform(35, 60)
  return np.clip(base + contrast * noise, 0, 255).astype(np.float32)


_PHOTOS = {}


def _photo(name):
  """A photograph shipped with matplotlib, float32 [H, W, 3] (cached per process)."""
  if name not in _PHOTOS:
    import matplotlib  # noqa: PLC0415
    base = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data")
    if name == "grace_hopper":
      from PIL import Image  # noqa: PLC0415
      img = np.asarray(Image.open(os.path.join(base, "grace_hopper.jpg")).convert("RGB"),
                       np.float32)
    else:  # topobathy: an elevation map, coloured and hill-shaded like an aerial photograph
      with np.load(os.path.join(base, "topobathy.npz")) as z:
        elev = z["topo"].astype(np.float64)
      gy, gx = np.gradient(elev)
      shade = np.clip(0.6 + 0.02 * (gx - gy), 0.2, 1.2)[..., None]
      norm = (elev - elev.min()) / (np.ptp(elev) + 1e-6)
      img = (matplotlib.colormaps["gist_earth"](norm)[..., :3] * 255 * shade).clip(0, 255)
      img = img.astype(np.float32)
    _PHOTOS[name] = img
  return _PHOTOS[name]


def photo_texture(rng, height, width):
  """A random crop of a packaged photograph, rescaled to [height, width, 3]."""
  img = _photo(str(rng.choice(["grace_hopper", "topobathy"])))
  ih, iw = img.shape[:2]
  zoom = rng.uniform(0.35, 0.8)    # the crop's share of the photo's short side
  ch = max(8, int(min(ih, iw) * zoom * height / max(height, width)))
  cw = max(8, int(ch * width / height))
  cw, ch = min(cw, iw), min(ch, ih)
  y = int(rng.integers(0, ih - ch + 1))
  x = int(rng.integers(0, iw - cw + 1))
  crop = img[y:y + ch, x:x + cw].astype(np.float64)
  out = _upsample(crop, height, width)
  if rng.random() < 0.5:
    out = out[:, ::-1]
  return out.astype(np.float32)


def surface_grain(rng, height, width, block=2):
  """Fine surface texture [height, width, 1] in {0, 1}: `block`-px squares at random."""
  t = rng.integers(0, 2, size=(height // block + 1, width // block + 1, 1)).astype(np.float32)
  return np.repeat(np.repeat(t, block, 0), block, 1)[:height, :width]


def make_texture(rng, height, width, photo_prob=0.4, shade=(0.3, 0.45), grain=(95, 125)):
  """A textured surface [height, width, 3] float32: a photograph crop or procedural noise,
  darkened to `shade` of its brightness, plus `grain` grey levels on a random half of 2 px
  squares.

  The fine, full-contrast grain is what makes motion visible at every point, as texture does
  on real surfaces at video resolution: CtP's patches are cut from the clip itself and show
  only where their texture moves. Measured with the demo pretraining (Adam, one seed): on
  photographs and noise with weaker grain (+-40-60 grey levels added at full brightness) the
  IoU stayed on the static guess for 144-192 steps; on the two-colour texture of version 3 it
  left it by step ~120. This keeps that texture's contrast and lays the photograph's light and colour under it.
  """
  if rng.random() < photo_prob:
    tex = photo_texture(rng, height, width)
  else:
    tex = noise_texture(rng, height, width)
  tex = tex * rng.uniform(*shade) + rng.uniform(*grain, size=3) * surface_grain(rng, height,
                                                                                 width)
  return np.clip(tex, 0, 255).astype(np.float32)


# ------------------------------------------------------------------------------- trajectories

def _main_trajectory(rng, cls, t, width, height):
  """Centres [T, 2] (x, y) and scale [T] of the main object for class `cls`; half size `r`.

  Every class draws the object's (geometric mean) size from the same range, so its size in a
  frame says little about the class; only the change over time does.
  """
  short = min(width, height)
  steps = np.arange(t, dtype=np.float64)
  margin = 2.0
  r = rng.uniform(0.09, 0.13) * short
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


def video_spec(seed, class_index, video_index, *, width, height, min_frames, max_frames,
               mp4_fraction, **_):
  """Everything random about one video, drawn from its own seed (so any subset regenerates)."""
  rng = np.random.default_rng([int(seed), int(class_index), int(video_index)])
  cls = CLASSES[class_index]
  t = int(rng.integers(min_frames, max_frames + 1))
  centres, scale, r = _main_trajectory(rng, cls, t, width, height)
  aspect = rng.uniform(0.7, 1.4)
  main = {"centres": centres, "scale": scale,
          "half": (r * math.sqrt(aspect), r / math.sqrt(aspect)),
          "shape": str(rng.choice(["rect", "ellipse", "diamond"])),
          "tex_seed": int(rng.integers(1 << 31)), "rim": float(rng.choice([20.0, 235.0]))}
  # Camera pan: the background (and the distractors on it) slides by up to ~0.3 px per frame
  # in a random direction; the main object's trajectory is in frame coordinates, so its class
  # is what the viewer sees, whatever the camera does.
  short = min(width, height)
  pan_speed = rng.uniform(0.0, 0.15)
  pan_angle = rng.uniform(0, 2 * math.pi)
  pan = pan_speed * np.stack([np.cos(pan_angle), np.sin(pan_angle)]) * np.arange(t)[:, None]
  margin = int(math.ceil(0.15 * t)) + 2
  distractors = []
  for _ in range(int(rng.integers(1, 3))):
    dr = rng.uniform(0.04, 0.07) * short
    drift = rng.uniform(-0.15, 0.15, size=2)
    start = np.array([rng.uniform(margin + dr, width + margin - dr),
                      rng.uniform(margin + dr, height + margin - dr)])
    distractors.append({"world": start + drift * np.arange(t)[:, None],
                        "half": (dr * rng.uniform(0.8, 1.25), dr * rng.uniform(0.8, 1.25)),
                        "shape": str(rng.choice(["rect", "ellipse", "diamond"])),
                        "tex_seed": int(rng.integers(1 << 31))})
  return {"class": cls, "frames": t, "main": main, "bg_seed": rng.integers(1 << 31),
          "camera": pan + margin, "margin": margin, "distractors": distractors,
          "format": "mp4" if rng.random() < mp4_fraction else "avi", "width": width,
          "height": height}


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

def _paste(frame, texture, cx, cy, hx, hy, shape, rim=None):
  """Alpha-blends a shape centred at (cx, cy) with half sizes (hx, hy) into frame.

  `texture` is a colour (3,) or an image [th, tw, 3] attached to the object (stretched over its
  box, so it moves and scales with it). `rim`: grey level of a ~1.5 px outline, or None.
  """
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
  size = min(hx, hy)
  alpha = np.clip((1.0 - d) * size, 0.0, 1.0)[..., None]
  texture = np.asarray(texture, np.float32)
  if texture.ndim == 1:
    colour = texture
  else:
    th, tw = texture.shape[:2]
    tx = np.clip((uu + 1) * 0.5 * (tw - 1), 0, tw - 1)
    ty = np.clip((vv + 1) * 0.5 * (th - 1), 0, th - 1)
    ix, iy = np.floor(tx).astype(int), np.floor(ty).astype(int)
    jx, jy = np.minimum(ix + 1, tw - 1), np.minimum(iy + 1, th - 1)
    fx, fy = (tx - ix)[..., None], (ty - iy)[..., None]
    colour = ((texture[iy, ix] * (1 - fx) + texture[iy, jx] * fx) * (1 - fy)
              + (texture[jy, ix] * (1 - fx) + texture[jy, jx] * fx) * fy)
  if rim is not None:
    ring = np.clip(1.0 - np.abs((1.0 - d) * size - 0.75) / 1.0, 0.0, 1.0)[..., None] * 0.8
    colour = colour * (1 - ring) + rim * ring
  region = frame[y0:y1, x0:x1]
  frame[y0:y1, x0:x1] = region * (1 - alpha) + colour * alpha


def _shift_crop(canvas, x, y, h, w):
  """canvas[y:y+h, x:x+w] at fractional (x, y), bilinear."""
  ix, iy = int(math.floor(x)), int(math.floor(y))
  fx, fy = x - ix, y - iy
  c = canvas[iy:iy + h + 1, ix:ix + w + 1]
  row = c[:, :w] * (1 - fx) + c[:, 1:w + 1] * fx
  return row[:h] * (1 - fy) + row[1:h + 1] * fy


def render_video(spec):
  """uint8 [T, H, W, 3] frames of a `video_spec`."""
  h, w, t = spec["height"], spec["width"], spec["frames"]
  m = spec["margin"]
  canvas = make_texture(np.random.default_rng(int(spec["bg_seed"])), h + 2 * m + 2,
                        w + 2 * m + 2)
  obj = spec["main"]
  # The main object is lighter than the scene (as the white object of version 3 was), with a
  # texture of its own: findable by a classifier trained from scratch, trackable by its texture.
  obj_tex = make_texture(np.random.default_rng(obj["tex_seed"]), 48, 48, shade=(0.75, 0.95),
                         grain=(40, 60))
  dis_tex = [make_texture(np.random.default_rng(d["tex_seed"]), 24, 24)
             for d in spec["distractors"]]
  frames = np.empty((t, h, w, 3), np.uint8)
  for i in range(t):
    # Whole-pixel camera steps: a sub-pixel (bilinear) shift would blur the 2 px grain by a
    # different amount in every frame, so every pixel would change as if something moved there.
    cam_x, cam_y = np.round(spec["camera"][i])
    frame = _shift_crop(canvas, cam_x, cam_y, h, w).astype(np.float32)
    for d, tex in zip(spec["distractors"], dis_tex):
      dx, dy = d["world"][i]
      _paste(frame, tex, dx - cam_x, dy - cam_y, d["half"][0], d["half"][1], d["shape"])
    s = obj["scale"][i]
    cx, cy = obj["centres"][i]
    _paste(frame, obj_tex, cx, cy, obj["half"][0] * s, obj["half"][1] * s, obj["shape"],
           rim=obj["rim"])
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
  cfg = default_sizes()
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
  meta = {"version": VERSION, "seed": int(seed), "config": cfg, "classes": list(CLASSES),
          "videos": []}
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
          "half": [round(float(x), 3) for x in spec["main"]["half"]]})
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
