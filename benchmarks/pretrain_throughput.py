#!/usr/bin/env python
"""Pretraining throughput: clips/s of the whole `fit` loop (input pipeline + model), of the
pipeline alone and of the model alone (one cached batch), with the pipeline's share.

  python benchmarks/pretrain_throughput.py                       # demo and r3d18 sizes
  python benchmarks/pretrain_throughput.py --sizes=demo --steps=20 --output=bench.json

`pipeline_share` = (seconds per clip of the pipeline alone) / (seconds per clip of fit): the
fraction of a fit step the input pipeline would take on its own; near or above 1 the run is
input-bound. `input_bound` compares fit with the model alone. Prints one JSON object.
"""

import json
import os
import resource
import time

# TensorFlow's oneDNN CPU kernels (see ctp_tf/__init__.py); set before anything imports TF.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


from absl import app, flags

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Shards (default: the demo data, made once).")
_SIZES = flags.DEFINE_list("sizes", ["demo", "r3d18"], "demo (configs/demo.py) and/or r3d18 "
                           "(configs/ucf101_r3d18.py: R3D-18, 16x112x112).")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (after warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps (tracing, pipeline fill).")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Per-replica batch (0: the config's; r3d18 "
                              "uses 8 on CPU-only machines).")
_JIT = flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the JSON here.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(size):
  from ctp_tf.training.config_utils import load_config_file
  name = {"demo": "demo.py", "r3d18": "ucf101_r3d18.py"}[size]
  return load_config_file(os.path.join(REPO, "configs", name))


def _time_pipeline(ds, steps, warmup):
  it = iter(ds)
  for _ in range(warmup):
    next(it)
  t0 = time.perf_counter()
  for _ in range(steps):
    batch = next(it)
  batch["clip"].numpy()
  return time.perf_counter() - t0


class _StepTimer:
  """Times fit steps after `warmup` (wall time between batch ends)."""

  def __init__(self, warmup):
    import keras

    class T(keras.callbacks.Callback):
      def __init__(self):
        super().__init__()
        self.times = []

      def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])   # wait for the step
        self.times.append(time.perf_counter())

    self.cb = T()
    self.warmup = warmup

  def seconds(self):
    t = self.cb.times
    return t[-1] - t[self.warmup - 1]


def bench(size, data_dir):
  import keras
  import tensorflow as tf
  from ctp_tf.training import optimizer as optim, pretrain

  config = _config(size)
  gpus = tf.config.list_logical_devices("GPU")
  if _BATCH.value:
    config.train.batch_size = _BATCH.value
  elif size == "r3d18" and not gpus:
    config.train.batch_size = 8
  b = int(config.train.batch_size)
  steps, warmup = _STEPS.value, _WARMUP.value
  clip_shape = (config.data.clip_len, config.data.crop_size, config.data.crop_size)
  n = int(config.synthesis.num_trajectories)

  ds = pretrain.default_dataset_fn(data_dir, config, batch_size=b, seed=0,
                                   num_input_pipelines=1, input_pipeline_id=0)
  pipe_s = _time_pipeline(ds, steps, warmup)

  keras.utils.set_random_seed(0)
  model = pretrain.default_model_fn(config, clip_shape, n, False)
  model.compile(optimizer=optim.make_optimizer(config.optimizer, 1000, b),
                jit_compile=_JIT.value)
  total = warmup + steps

  timer = _StepTimer(warmup)
  model.fit(ds, epochs=1, steps_per_epoch=total, callbacks=[timer.cb], verbose=0)
  fit_s = timer.seconds()

  cached = ds.take(1).cache().repeat()
  timer = _StepTimer(warmup)
  model.fit(cached, epochs=1, steps_per_epoch=total, callbacks=[timer.cb], verbose=0)
  model_s = timer.seconds()

  clips = steps * b
  return {
      "size": size, "arch": config.model.arch, "width": config.model.width_multiplier,
      "clip_shape": list(clip_shape), "batch_size": b, "steps": steps,
      "fit_clips_per_s": clips / fit_s, "pipeline_clips_per_s": clips / pipe_s,
      "model_clips_per_s": clips / model_s,
      "pipeline_share": pipe_s / fit_s,
      "input_bound": bool(fit_s > 1.1 * model_s),
      "step_ms_fit": 1000 * fit_s / steps, "step_ms_model": 1000 * model_s / steps,
  }


def main(argv):
  del argv
  import tensorflow as tf
  data_dir = _DATA_DIR.value
  if not data_dir:
    from ctp_tf.demo import assets as demo_assets
    data_dir = demo_assets.ensure_demo_data(progress=False)
  results = [bench(s, data_dir) for s in _SIZES.value]
  out = {
      "benchmark": "pretrain_throughput", "data_dir": data_dir, "results": results,
      "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
      "cpus": os.cpu_count(), "jit_compile": _JIT.value,
      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
  }
  text = json.dumps(out, indent=2)
  print(text)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
