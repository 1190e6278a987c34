r"""Trajectory synthesis alone, ours against the PyTorch release's PatchMask, one core each.

Both get the SAME in-memory uint8 clips (16x112x112, camera pans over a photograph with sensor
noise) and paste 3 patches per clip:

  ctp_tf:  `synthesize_trajectories(clip, seed)` mapped over the clips by tf.data (one thread,
           intra/inter-op threads 1), batched by 32, as the pretraining pipeline runs it.
  release: `PatchMask(...).apply_image(frames)` of microsoft/CtP (numpy + OpenCV per patch
           window, `cv2.setNumThreads(1)`), the release's own settings (3 patches, key-frame
           probabilities 0.5/0.3/0.2, speed 3, scale rate 0.025, label_prob 0.8). Loaded from
           a checkout passed with --release (nothing of it enters the project; its mmcv import
           is replaced by a small stand-in). Without --release only ours is timed.

Each timing runs in a fresh process pinned with `taskset -c <core>` (OMP/OpenBLAS threads 1),
alternated `--rounds` times, and reports clips per CPU-second (process CPU time) and ratio =
ours / release.

  python benchmarks/synthesis_speed.py --release=<microsoft/CtP checkout> --rounds=3 \
      [--baseline_pythonpath=<checkout of an older ctp_tf>]
"""

import json
import os
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_string("release", "", "Extracted microsoft/CtP tree (has pyvrl/); empty: ours only.")
flags.DEFINE_integer("rounds", 3, "Alternated repetitions of each timing.")
flags.DEFINE_integer("clips", 512, "Timed clips per timing (after warm-up).")
flags.DEFINE_integer("distinct", 32, "Distinct clips held in memory (cycled).")
flags.DEFINE_integer("core", 1, "CPU the timed processes are pinned to (taskset -c).")
flags.DEFINE_string("baseline_pythonpath", "", "Also time ctp_tf imported from this PYTHONPATH "
                    "(e.g. a checkout of an older commit), alternated with the others, as "
                    "'ctp_tf_baseline'.")
flags.DEFINE_string("output", "", "Also write the JSON here.")
flags.DEFINE_string("worker", "", "Internal: 'ctp_tf' or 'release'.")

FLAGS = flags.FLAGS


def make_clips(n, t=16, size=112, seed=0):
  """`n` uint8 clips `[t, size, size, 3]`: slow pans over a photograph with sensor noise."""
  import matplotlib.cbook
  import numpy as np
  import tensorflow as tf

  with open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
    photo = tf.io.decode_jpeg(f.read()).numpy().astype(np.float32)
  rng = np.random.default_rng(seed)
  clips = np.empty((n, t, size, size, 3), np.uint8)
  for i in range(n):
    side = int(rng.uniform(1.2, 2.5) * size)
    big = tf.image.resize(photo, (side, side)).numpy()
    y, x = rng.uniform(0, side - size, 2)
    vy, vx = rng.uniform(-2, 2, 2)
    for j in range(t):
      yy = int(np.clip(y + vy * j, 0, side - size))
      xx = int(np.clip(x + vx * j, 0, side - size))
      frame = big[yy:yy + size, xx:xx + size] + rng.normal(0, 2.0, (size, size, 3))
      clips[i, j] = np.clip(frame, 0, 255).astype(np.uint8)
  return clips


def _cpu():
  import resource
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def time_ctp_tf(clips, n):
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from ctp_tf import defaults
  from ctp_tf.data import pretrain_input
  from ctp_tf.data.synthesis import synthesize_trajectories

  config = defaults.pretrain_config().synthesis
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  batch = 32
  ds = tf.data.Dataset.from_tensor_slices(clips).repeat()
  ds = tf.data.Dataset.zip(ds, pretrain_input.example_seeds(0, 0))
  ds = ds.map(lambda c, s: synthesize_trajectories(c, s, config),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch, drop_remainder=True).prefetch(2).with_options(options)
  it = iter(ds)
  for _ in range(2):
    next(it)
  steps = max(1, n // batch)
  c0 = _cpu()
  for _ in range(steps):
    out = next(it)
  cpu = _cpu() - c0
  assert out["clip"].shape == (batch, 16, 112, 112, 3) and out["boxes"].shape[1] == 3
  return steps * batch / cpu


def _load_patch_mask(release):
  """The release's PatchMask class, with its mmcv/package imports replaced by stand-ins."""
  import importlib.util
  import types
  import numpy as np
  np.int = int   # removed from numpy 1.24+, used by the release

  def package(name, path=None):
    m = types.ModuleType(name)
    m.__path__ = [path] if path else []
    sys.modules[name] = m
    return m

  def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m
    spec.loader.exec_module(m)
    return m

  class Registry:
    def register_module(self, *a, **k):
      return lambda c: c

  root = os.path.join(release, "pyvrl")
  package("pyvrl", root)
  package("pyvrl.builder").TRANSFORMS = Registry()
  datasets = package("pyvrl.datasets", os.path.join(root, "datasets"))
  package("pyvrl.datasets.transforms", os.path.join(root, "datasets", "transforms"))
  base = load("pyvrl.datasets.transforms.base_transform",
              os.path.join(root, "datasets", "transforms", "base_transform.py"))
  datasets.BaseTransform = base.BaseTransform
  load("pyvrl.datasets.transforms.dynamic_utils",
       os.path.join(root, "datasets", "transforms", "dynamic_utils.py"))
  for p in ["pyvrl.models", "pyvrl.models.pretraining", "pyvrl.models.pretraining.ctp"]:
    package(p, os.path.join(release, *p.split(".")))
  ct = load("pyvrl.models.pretraining.ctp.ctp_transforms",
            os.path.join(root, "models", "pretraining", "ctp", "ctp_transforms.py"))
  return ct.PatchMask


def time_release(clips, n, release):
  import random
  import cv2
  import numpy as np
  cv2.setNumThreads(1)
  patch_mask = _load_patch_mask(release)(
      region_sampler=dict(scales=[16, 24, 28, 32, 48, 64],
                          ratios=[0.5, 0.67, 0.75, 1.0, 1.33, 1.50, 2.0],
                          scale_jitter=0.18, num_rois=3),
      key_frame_probs=[0.5, 0.3, 0.2], loc_velocity=3, size_velocity=0.025, label_prob=0.8)
  np.random.seed(0)
  random.seed(0)
  frames = [list(c) for c in clips]
  for i in range(32):
    patch_mask.apply_image(frames[i % len(frames)])
  c0 = _cpu()
  for i in range(n):
    out = patch_mask.apply_image(frames[i % len(frames)])
  cpu = _cpu() - c0
  assert len(out) == 16 and out[0].shape == (112, 112, 3)
  return n / cpu


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  if FLAGS.worker:
    import numpy as np
    clips = np.load(os.environ["CTP_SYNTHESIS_SPEED_CLIPS"])
    if FLAGS.worker == "ctp_tf":
      rate = time_ctp_tf(clips, FLAGS.clips)
    else:
      rate = time_release(clips, FLAGS.clips, FLAGS.release)
    print(f"RESULT {rate}")
    return
  if FLAGS.release and not os.path.isdir(os.path.join(FLAGS.release, "pyvrl")):
    print(f"--release={FLAGS.release} has no pyvrl/ (extract microsoft/CtP there)",
          file=sys.stderr)
    sys.exit(2)
  import tempfile
  import numpy as np
  work = tempfile.mkdtemp(prefix="ctp_synthesis_speed_")
  path = os.path.join(work, "clips.npy")
  np.save(path, make_clips(FLAGS.distinct))
  env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
             TF_CPP_MIN_LOG_LEVEL="3", CTP_SYNTHESIS_SPEED_CLIPS=path)
  who_list = (["ctp_tf"] + (["ctp_tf_baseline"] if FLAGS.baseline_pythonpath else [])
              + (["release"] if FLAGS.release else []))
  out = {"unit": "clips per CPU-second, one core", "clip": [16, 112, 112, 3], "patches": 3,
         "load_average_before": os.getloadavg(), **{w: [] for w in who_list}}
  for _ in range(FLAGS.rounds):
    for who in who_list:
      cmd = ["taskset", "-c", str(FLAGS.core), sys.executable, os.path.abspath(__file__),
             f"--worker={who}", f"--clips={FLAGS.clips}", f"--release={FLAGS.release}"]
      run_env = env
      if who == "ctp_tf_baseline":
        cmd[-3] = "--worker=ctp_tf"
        run_env = dict(env, PYTHONPATH=FLAGS.baseline_pythonpath)
      r = subprocess.run(cmd, env=run_env, capture_output=True, text=True, check=False)
      line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
      if r.returncode or not line:
        print(f"{who} timing failed:\n{r.stderr[-3000:]}", file=sys.stderr)
        sys.exit(1)
      out[who].append(round(float(line[0].split()[1]), 1))
      print(f"{who}: {out[who][-1]}", file=sys.stderr)
  if FLAGS.release:
    out["ratio"] = round(sum(out["ctp_tf"]) / sum(out["release"]), 3)
    if FLAGS.baseline_pythonpath:
      out["baseline_ratio"] = round(sum(out["ctp_tf_baseline"]) / sum(out["release"]), 3)
  out["load_average_after"] = os.getloadavg()
  text = json.dumps(out)
  print(text)
  if FLAGS.output:
    from ctp_tf import fileio
    fileio.write_text_atomic(FLAGS.output, text)


if __name__ == "__main__":
  app.run(main)
