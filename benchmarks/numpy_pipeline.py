r"""The PyTorch release's style of input pipeline, in numpy/OpenCV, timed on the same frames.

The CtP goal for our tf.data pipeline is stated against "the PyTorch release's per-sample
numpy/OpenCV pipeline" (zip of JPEGs -> sample -> scale -> crop -> flip -> patches -> colour ->
tensor; 99 clips/s on one core of the 2-core development machine at 320x240). That number came
from elsewhere; this script measures the same kind of pipeline here, next to ours, on the same
JPEG bytes. It is written from REFERENCE.md's description of the work, one sample at a time
as a PyTorch `Dataset.__getitem__` would do it (no torch needed: the last step makes the
float32 C,T,H,W array that `torch.from_numpy` would wrap without a copy):

  zip of JPEGs (one per video, like the release's frame archives) -> 16 indices, stride 1..5,
  jitter -> cv2.imdecode each -> BGR->RGB -> cv2.resize to short side {112,128,144} ->
  random 112 crop -> flip p 0.5 -> 3 patches along linear box trajectories (cut from a random
  frame, cv2.resize'd to each frame's box, rectangle/ellipse/rhombus alpha, soft edge p 0.5,
  opacity 0.8..1, visible p 0.8), larger first -> hue/saturation p 0.25 (cv2 HSV) ->
  brightness p 0.5 / contrast p 0.5 interpolated over 2 key frames -> normalise -> C,T,H,W.

It needs OpenCV (`pip install opencv-python-headless`), which ctp_tf itself does not use.
Prints JSON: clips per CPU-second on one core (pinned, OpenCV single-threaded) and where the
time goes (decode, decode+scale+crop+flip, +patches, complete).

  python benchmarks/numpy_pipeline.py --data_dir=/tmp/ctp_bench/320x240
  (data_dir: shards written by benchmarks/pretrain_pipeline.py --work_dir=/tmp/ctp_bench)
"""

import io
import json
import os
import sys
import time
import zipfile

from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a script: the test suite imports `sample` next to other modules'
  # flags of the same names.
  flags.DEFINE_string("data_dir", None, "Shards from benchmarks/pretrain_pipeline.py.",
                      required=True)
  flags.DEFINE_integer("clips", 200, "Timed clips per stage.")
  flags.DEFINE_integer("warmup", 20, "Untimed clips first.")
  flags.DEFINE_string("output", "", "Also write the JSON here.")

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def shards_to_zips(data_dir):
  """One in-memory zip of JPEGs per video, read from the TFRecord shards once (untimed)."""
  import glob

  import tensorflow as tf
  zips = []
  for path in sorted(glob.glob(os.path.join(data_dir, "*.tfrecord"))):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      ex = tf.train.SequenceExample.FromString(raw)
      frames = [f.bytes_list.value[0]
                for f in ex.feature_lists.feature_list["image/encoded"].feature]
      buf = io.BytesIO()
      with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i, j in enumerate(frames):
          z.writestr(f"img_{i + 1:05d}.jpg", j)
      zips.append((buf.getvalue(), len(frames)))
  return zips


def _interp(key_vals, key_times, t):
  import numpy as np
  return np.interp(np.arange(t), key_times, key_vals)


def _alpha(h, w, shape, soft, d0, rng):
  import numpy as np
  y = (np.arange(h) + 0.5) / h - 0.5
  x = (np.arange(w) + 0.5) / w - 0.5
  if shape == 0:
    d = np.maximum(np.abs(y)[:, None], np.abs(x)[None, :])
  elif shape == 1:
    d = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
  else:
    d = np.abs(y)[:, None] + np.abs(x)[None, :]
  if soft:
    return np.clip((0.5 - d) / (0.5 - d0), 0.0, 1.0).astype(np.float32)
  return (d <= 0.5).astype(np.float32)


def _trajectory(rng, t, size):
  """Integer boxes [T, 4] (x1, y1, x2, y2): linear between 3..5 key frames, speed 3 px/frame."""
  import numpy as np
  s = rng.choice((16, 24, 28, 32, 48, 64))
  r = rng.choice((0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0))
  w = np.clip(s * np.sqrt(r) * np.exp(rng.uniform(-0.18, 0.18)), 1, size - 1)
  h = np.clip(s / np.sqrt(r) * np.exp(rng.uniform(-0.18, 0.18)), 1, size - 1)
  k = rng.integers(1, 4)
  keys = np.unique(np.concatenate([[0], np.sort(rng.integers(1, t - 1, k)), [t - 1]]))
  cx, cy = [rng.uniform(w / 2, size - w / 2)], [rng.uniform(h / 2, size - h / 2)]
  ws, hs = [w], [h]
  for dt in np.diff(keys):
    ws.append(np.clip(ws[-1] * np.exp(rng.uniform(-0.025 * dt, 0.025 * dt)), 1, size - 1))
    hs.append(np.clip(hs[-1] * np.exp(rng.uniform(-0.025 * dt, 0.025 * dt)), 1, size - 1))
    cx.append(np.clip(cx[-1] + rng.uniform(-3 * dt, 3 * dt), ws[-1] / 2, size - ws[-1] / 2))
    cy.append(np.clip(cy[-1] + rng.uniform(-3 * dt, 3 * dt), hs[-1] / 2, size - hs[-1] / 2))
  cx, cy, ws, hs = (_interp(v, keys, t) for v in (cx, cy, ws, hs))
  boxes = np.stack([cx - ws / 2, cy - hs / 2, cx + ws / 2, cy + hs / 2], 1)
  return np.clip(np.round(boxes), 0, size).astype(np.int64)


def sample(zip_bytes, num_frames, rng, stage="full"):
  """One training example, the per-sample numpy/OpenCV way."""
  import cv2
  import numpy as np
  t, size = 16, 112
  stride = rng.integers(1, 6)
  start = rng.integers(0, max(1, num_frames - t * stride + 1))
  idx = np.minimum(start + np.arange(t) * stride + rng.integers(0, stride, t), num_frames - 1)
  with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
    frames = [cv2.imdecode(np.frombuffer(z.read(f"img_{i + 1:05d}.jpg"), np.uint8),
                           cv2.IMREAD_COLOR) for i in idx]
  if stage == "decode":
    return frames
  short = rng.choice((112, 128, 144))
  h0, w0 = frames[0].shape[:2]
  sh, sw = int(h0 * short / min(h0, w0) + 0.5), int(w0 * short / min(h0, w0) + 0.5)
  y, x = rng.integers(0, sh - size + 1), rng.integers(0, sw - size + 1)
  flip = rng.uniform() < 0.5
  out = []
  for f in frames:
    f = cv2.cvtColor(cv2.resize(f, (sw, sh), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    f = f[y:y + size, x:x + size]
    out.append(f[:, ::-1] if flip else f)
  clip = np.ascontiguousarray(np.stack(out))
  if stage == "scale_crop":
    return clip
  trajs = [_trajectory(rng, t, size) for _ in range(3)]
  areas = [np.mean((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) for b in trajs]
  src = clip.copy()
  for n in np.argsort(areas)[::-1]:
    boxes = trajs[n]
    s = rng.integers(0, t)
    x1, y1, x2, y2 = boxes[s]
    patch = src[s, y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)].astype(np.float32)
    shape = rng.choice(3, p=(0.5, 0.35, 0.15))
    soft, d0 = rng.uniform() < 0.5, rng.uniform(0.30, 0.45)
    opacity = _interp(rng.uniform(0.8, 1.0, 2), (0, t - 1), t)
    visible = (rng.uniform(size=t) < 0.8) | (np.arange(t) == 0) | (np.arange(t) == s)
    for i in np.nonzero(visible)[0]:
      x1, y1, x2, y2 = boxes[i]
      bw, bh = max(x2 - x1, 1), max(y2 - y1, 1)
      p = cv2.resize(patch, (bw, bh), interpolation=cv2.INTER_LINEAR)
      a = (_alpha(bh, bw, shape, soft, d0, rng) * opacity[i])[..., None]
      region = clip[i, y1:y1 + bh, x1:x1 + bw].astype(np.float32)
      a, p = a[:region.shape[0], :region.shape[1]], p[:region.shape[0], :region.shape[1]]
      clip[i, y1:y1 + bh, x1:x1 + bw] = (region * (1 - a) + p * a + 0.5).astype(np.uint8)
  if stage == "patches":
    return clip
  if rng.uniform() < 0.25:
    hue, sat = rng.uniform(-12, 12), np.exp(rng.uniform(-0.1, 0.1))
    for i in range(t):
      hsv = cv2.cvtColor(clip[i], cv2.COLOR_RGB2HSV).astype(np.float32)
      hsv[..., 0] = (hsv[..., 0] + hue) % 180
      hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
      clip[i] = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
  out = clip.astype(np.float32)
  if rng.uniform() < 0.5:
    out += _interp(rng.uniform(-30, 30, 2), (0, t - 1), t).astype(np.float32)[:, None, None, None]
  if rng.uniform() < 0.5:
    c = np.exp(_interp(rng.uniform(-0.12, 0.12, 2), (0, t - 1), t)).astype(np.float32)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * c[:, None, None, None] + mean
  np.clip(out, 0, 255, out=out)
  out = (out / 255.0 - np.float32(_MEAN)) / np.float32(_STD)
  return (np.ascontiguousarray(out.transpose(3, 0, 1, 2)), trajs)


def time_stage(zips, stage, clips, warmup, seed=0):
  import numpy as np
  rng = np.random.default_rng(seed)
  for i in range(warmup):
    sample(*zips[i % len(zips)], rng, stage)
  cpu = time.process_time()
  for i in range(clips):
    sample(*zips[int(rng.integers(0, len(zips)))], rng, stage)
  cpu = time.process_time() - cpu
  return {"stage": stage, "cpu_ms_per_clip": round(1000 * cpu / clips, 2),
          "clips_per_cpu_s": round(clips / cpu, 1)}


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  zips = shards_to_zips(FLAGS.data_dir)
  if not zips:
    raise FileNotFoundError(f"no *.tfrecord shards under --data_dir={FLAGS.data_dir}")
  os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  import cv2
  cv2.setNumThreads(1)
  results = {"pipeline": "numpy/OpenCV per sample (PyTorch release style)", "cores": 1,
             "opencv": cv2.__version__, "videos": len(zips),
             "stored_bytes_per_frame": round(sum(len(z) for z, _ in zips)
                                             / sum(n for _, n in zips)),
             "runs": [time_stage(zips, s, FLAGS.clips, FLAGS.warmup)
                      for s in ("decode", "scale_crop", "patches", "full")]}
  text = json.dumps(results, indent=2)
  print(text)
  if FLAGS.output:
    from ctp_tf import fileio
    fileio.write_text_atomic(FLAGS.output, text)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
