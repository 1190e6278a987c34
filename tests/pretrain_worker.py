"""Subprocess harness for the distributed and kill/resume tests: one `train()` call.

  python tests/pretrain_worker.py SPEC_JSON   (one spec or a list, run in turn in one process)

SPEC: workdir, strategy, out (npz of the final trainable weights), logical_cpus (set before TF
initialises), overrides ({"train.epochs": 2, ...}), data ("synthetic" | "pool"),
kill_at_step (SIGKILL itself at the end of that step), result (metrics JSON path),
state_at_start (npz of the model weights `m<i>` and optimizer variables `o<i>` when training
starts, i.e. right after a resume restored them), step_logs (JSON list of the per-step logs the
callbacks see, e.g. what TensorBoard gets).
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""


def pool_dataset_fn(data_dir, config, *, batch_size, seed, num_input_pipelines=1,
                    input_pipeline_id=0):
  """A fixed pool of 8 examples cycled in order: replica batches of a global batch are the
  consecutive slices of what one device gets, so strategies can be compared exactly. With
  several input pipelines (one per worker), pipeline i takes the i-th slice of each global
  batch."""
  import numpy as np
  import tensorflow as tf
  del data_dir, seed
  t, s = int(config.data.clip_len), int(config.data.crop_size)
  n = int(config.synthesis.num_trajectories)
  rng = np.random.default_rng(0)
  clip = rng.integers(0, 256, (8, t, s, s, 3)).astype(np.uint8)
  start = rng.uniform(2, s / 2, (8, n, 1, 2))
  vel = rng.uniform(-1, 1, (8, n, 1, 2))
  xy = start + vel * np.arange(t)[None, None, :, None]
  boxes = np.concatenate([xy, xy + s / 4], -1).astype(np.float32)
  ds = tf.data.Dataset.from_tensor_slices(
      {"clip": clip, "boxes": boxes, "weights": np.ones((8, n, t), np.float32)})
  ds = ds.repeat().batch(batch_size * num_input_pipelines, drop_remainder=True)
  if num_input_pipelines > 1:
    lo = input_pipeline_id * batch_size
    ds = ds.map(lambda b: {k: v[lo:lo + batch_size] for k, v in b.items()})
  return ds


def main():
  specs = json.loads(sys.argv[1])
  specs = specs if isinstance(specs, list) else [specs]
  if specs[0].get("logical_cpus"):
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * specs[0]["logical_cpus"])
  for spec in specs:
    run(spec)


def run(spec):
  import keras
  import numpy as np
  from pretrain_helpers import synthetic_dataset_fn, tiny_config
  from ctp_tf.training import pretrain

  config = tiny_config()
  for key, value in spec.get("overrides", {}).items():
    node = config
    parts = key.split(".")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  holder = {}

  def model_fn(*args):
    holder["model"] = pretrain.default_model_fn(*args)
    if spec.get("out_init"):
      np.savez(spec["out_init"], *[keras.ops.convert_to_numpy(v)
                                   for v in holder["model"].trainable_variables])
    return holder["model"]

  callbacks = []
  if spec.get("kill_at_step"):
    kill_at = int(spec["kill_at_step"])

    class Kill(keras.callbacks.Callback):
      def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= kill_at:
          os.kill(os.getpid(), signal.SIGKILL)

    callbacks.append(Kill())
  if spec.get("state_at_start"):
    from pretrain_helpers import model_state

    class StateAtStart(keras.callbacks.Callback):
      def on_train_begin(self, logs=None):
        if not os.path.exists(spec["state_at_start"]):
          weights, opt_vars = model_state(self.model)
          np.savez(spec["state_at_start"], **{f"m{i}": a for i, a in enumerate(weights)},
                   **{f"o{i}": a for i, a in enumerate(opt_vars)})

    callbacks.append(StateAtStart())
  if spec.get("step_logs"):
    rows = []

    class StepLogs(keras.callbacks.Callback):
      def on_train_batch_end(self, batch, logs=None):
        rows.append({k: float(np.asarray(v).reshape(-1)[0]) for k, v in (logs or {}).items()})
        with open(spec["step_logs"], "w") as f:
          json.dump(rows, f)

    callbacks.append(StepLogs())
  data = pool_dataset_fn if spec.get("data") == "pool" else synthetic_dataset_fn
  metrics = pretrain.train(config, data_dir=None, workdir=spec["workdir"],
                           strategy=spec.get("strategy", "default"), model_fn=model_fn,
                           dataset_fn=data, callbacks=callbacks)
  if spec.get("out"):
    np.savez(spec["out"], *[keras.ops.convert_to_numpy(v)
                            for v in holder["model"].trainable_variables])
  if spec.get("result"):
    with open(spec["result"], "w") as f:
      json.dump(metrics, f)


if __name__ == "__main__":
  main()
