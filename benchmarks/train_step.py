"""Training-step throughput and peak memory of the CtP model and the classifier.

Prints one JSON object per (task, arch, jit) run, then a JSON list of all of them:
  KERAS_BACKEND=tensorflow python benchmarks/train_step.py --archs=r3d_18 --tasks=classifier
  KERAS_BACKEND=jax python benchmarks/train_step.py --batch=4 --steps=5

clips/s counts training clips per second over `--steps` timed steps after `--warmup` steps
(tracing/compilation excluded). Peak memory: process RSS high-water mark (CPU), plus device
peak bytes where the backend reports them (TF `get_memory_info`, JAX `memory_stats`).
"""

import argparse
import json
import os
import resource
import time

# TensorFlow's oneDNN CPU kernels: without them Conv3D filter gradients run on a generic path
# that was ~500x slower here (1.4 s vs 3 ms for a small stem conv). Read at TF import time.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")



def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--tasks", default="classifier,ctp", help="comma list: classifier, ctp")
  p.add_argument("--archs", default="r3d_18,r2plus1d_18", help="comma list of backbones")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--size", type=int, default=112)
  p.add_argument("--steps", type=int, default=5, help="timed steps")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation)")
  p.add_argument("--jit", default="auto", choices=["auto", "on", "off", "both"],
                 help="jit_compile for model.compile (auto: Keras' choice per backend)")
  p.add_argument("--width", type=float, default=1.0, help="width multiplier")
  p.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: default)")
  p.add_argument("--output", default="", help="also write the JSON list here")
  return p.parse_args(argv)


def device_peak_bytes():
  import keras
  backend = keras.backend.backend()
  try:
    if backend == "jax":
      import jax
      stats = jax.devices()[0].memory_stats() or {}
      return stats.get("peak_bytes_in_use")
    if backend == "tensorflow":
      import tensorflow as tf
      if tf.config.list_physical_devices("GPU"):
        return tf.config.experimental.get_memory_info("GPU:0")["peak"]
  except Exception:   # pylint: disable=broad-except
    return None
  return None


def make_batch(batch, frames, size, seed=0):
  """Synthetic uint8 clips [B, T, S, S, 3], labels [B] (101 classes) and CtP boxes [B, 3, T, 4]:
  boxes a quarter of the frame wide, moving 1 px per frame."""
  import numpy as np
  rng = np.random.default_rng(seed)
  clip = rng.integers(0, 255, (batch, frames, size, size, 3)).astype(np.uint8)
  labels = rng.integers(0, 101, (batch,)).astype(np.int32)
  side = size // 4
  xy = (rng.uniform(0, size - side - frames, (batch, 3, 1, 2))
        + np.arange(frames)[None, None, :, None])
  boxes = np.concatenate([xy, xy + side], -1).astype(np.float32)
  return clip, labels, boxes


def make_task(task, arch, args, r2plus1d_mid_rule="conv"):
  """(model, training batch, loss) for `task` in classifier / ctp at the sizes in `args`.

  `r2plus1d_mid_rule="block"` gives torchvision's R(2+1)D widths (for comparisons with it)."""
  import keras
  import numpy as np
  from ctp_tf import defaults
  from ctp_tf.models import VideoClassifier, build_backbone, build_ctp_model
  t, s = args.frames, args.size
  clip, labels, boxes = make_batch(args.batch, t, s)
  if task == "classifier":
    model = VideoClassifier(build_backbone(arch, "standard", width_multiplier=args.width,
                                           input_shape=(t, s, s, 3),
                                           r2plus1d_mid_rule=r2plus1d_mid_rule), num_classes=101)
    data = (clip, labels)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  else:
    cfg = defaults.ctp_model_config()
    cfg.arch, cfg.width_multiplier = arch, args.width
    model = build_ctp_model(cfg, clip_shape=(t, s, s), num_boxes=3)
    data = {"clip": clip, "boxes": boxes, "weights": np.ones(boxes.shape[:3], np.float32)}
    loss = None
  return model, data, loss


def run_one(task, arch, jit, args):
  import keras
  import tensorflow as tf   # tf.data feeds every backend here
  keras.utils.set_random_seed(0)
  model, data, loss = make_task(task, arch, args)
  model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss,
                jit_compile=jit)
  ds = tf.data.Dataset.from_tensors(data).repeat()
  model.fit(ds, epochs=1, steps_per_epoch=args.warmup, verbose=0)
  start = time.perf_counter()
  model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0)
  elapsed = time.perf_counter() - start
  return {
      "task": task, "arch": arch, "backend": keras.backend.backend(),
      "jit_compile": getattr(model, "jit_compile", jit), "batch": args.batch,
      "clip": [args.frames, args.size, args.size], "width_multiplier": args.width,
      "steps": args.steps, "step_s": round(elapsed / args.steps, 4),
      "clips_per_s": round(args.batch * args.steps / elapsed, 4),
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      "device_peak_bytes": device_peak_bytes(),
      "params": model.count_params(), "cpu_count": os.cpu_count(),
      "load_avg_1m": round(os.getloadavg()[0], 2),
      "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
  }


def main(argv=None):
  args = parse_args(argv)
  if args.threads:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  jits = {"auto": ["auto"], "on": [True], "off": [False], "both": [False, True]}[args.jit]
  results = []
  for task in args.tasks.split(","):
    for arch in args.archs.split(","):
      for jit in jits:
        r = run_one(task.strip(), arch.strip(), jit, args)
        print(json.dumps(r), flush=True)
        results.append(r)
  print(json.dumps(results, indent=1))
  if args.output:
    with open(args.output, "w") as f:
      json.dump(results, f, indent=1)
  return results


if __name__ == "__main__":
  main()
