"""config.synthesis.placement="accelerator": the keras.ops stage in the step equals the map.

Same seeds -> same boxes and pixels within one grey level (1/255) of the "input" placement, on
the TensorFlow and (subprocess) the JAX backend; the stage under jit_compile in fit/evaluate.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf

from ctp_tf import defaults
from ctp_tf.data import pretrain_input
from ctp_tf.layers import synthesis_stage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(placement):
  c = defaults.pretrain_config()
  c.data.clip_len = 8
  c.data.short_sides = (40, 48)
  c.data.crop_size = 40
  c.data.shuffle_buffer = 4
  c.augment.hue_sat_prob = 0.6        # exercise hue/saturation on most clips
  c.synthesis.scales = (8, 16, 24)
  c.synthesis.placement = placement
  return c


def _batches(data_dir, placement, n=2, batch_size=3, seed=7):
  ds = pretrain_input.pretrain_dataset(data_dir, _config(placement), batch_size=batch_size,
                                       seed=seed)
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def _check_close(want, got):
  diff = np.abs(want.astype(np.int32) - np.asarray(got).astype(np.int32))
  assert diff.max() <= 1, diff.max()                      # within 1/255
  assert (diff > 0).mean() < 1e-3, (diff > 0).mean()      # and only at rounding boundaries


def test_accelerator_placement_equals_input_placement(tiny_data_dir):
  ref = _batches(tiny_data_dir, "input")
  acc = _batches(tiny_data_dir, "accelerator")
  hue_clips = 0
  for r, a in zip(ref, acc):
    assert set(synthesis_stage.STAGE_KEYS) <= set(a)
    assert a["clip"].dtype == np.uint8 and a["clip"].shape == r["clip"].shape
    np.testing.assert_array_equal(a["boxes"], r["boxes"])          # same boxes, exactly
    np.testing.assert_array_equal(a["weights"], r["weights"])
    # The host really left the pixel work to the step ...
    assert (a["clip"] != r["clip"]).mean() > 0.2
    # ... which gives the input placement's pixels.
    fin = pretrain_input.finish_batch(a)
    assert fin["clip"].dtype == np.uint8 and set(fin) == set(r)
    _check_close(r["clip"], fin["clip"])
    hue_clips += int(a["colour_hue_apply"].sum())
  assert hue_clips >= 2   # hue/saturation was compared, not only skipped


def test_stage_pieces_match_the_tf_ops():
  """Hue/saturation and brightness/contrast alone against ctp_tf.data.color on random pixels."""
  from ctp_tf.data import color
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (3, 2, 9, 7, 3)).astype(np.float32)
  x[0, 0, 0, 0] = (30, 30, 30)      # grey: no hue
  x[0, 0, 0, 1] = (200, 200, 10)    # ties between channels
  apply = np.array([True, True, False])
  hue = np.array([11.5, -12.0, 5.0], np.float32)
  log_sat = np.array([0.1, -0.1, 0.05], np.float32)
  want = color.hue_saturation_batch(tf.constant(x), tf.constant(apply), hue, log_sat).numpy()
  got = keras.ops.convert_to_numpy(synthesis_stage.hue_saturation(x, apply, hue, log_sat))
  _check_close(want, got)
  shift = rng.uniform(-30, 30, (3, 2)).astype(np.float32)
  alpha = np.exp(rng.uniform(-0.12, 0.12, (3, 2))).astype(np.float32)
  want = color.brightness_contrast_batch(tf.constant(x), shift, alpha).numpy()
  got = keras.ops.convert_to_numpy(synthesis_stage.brightness_contrast(x, shift, alpha))
  _check_close(want, got)


def _tiny_model():
  from ctp_tf.models import build_ctp_model
  cfg = defaults.ctp_model_config()
  cfg.arch = "r3d_10"
  cfg.width_multiplier = 0.125
  cfg.hidden = 16
  cfg.head_init_stds = (0.1, 0.1)   # outputs that depend on the pixels
  keras.utils.set_random_seed(0)
  return build_ctp_model(cfg, clip_shape=(8, 40, 40), num_boxes=3)


def test_stage_runs_in_a_jit_compiled_fit_step(tiny_data_dir):
  """XLA on CPU (the TPU stand-in): fit compiles the stage into the step; evaluating an
  accelerator batch gives the loss of the same clips finished by the input pipeline."""
  (acc,) = _batches(tiny_data_dir, "accelerator", n=1, batch_size=2)
  (ref,) = _batches(tiny_data_dir, "input", n=1, batch_size=2)
  model = _tiny_model()
  model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
  as_ds = lambda b: tf.data.Dataset.from_tensors(b).repeat()
  before = model.evaluate(as_ds(acc), steps=1, verbose=0, return_dict=True)
  want = model.evaluate(as_ds(ref), steps=1, verbose=0, return_dict=True)
  np.testing.assert_allclose(before["loss"], want["loss"], rtol=1e-4)
  raw = dict(ref, clip=acc["clip"])      # the un-finished crops: a different loss
  assert abs(model.evaluate(as_ds(raw), steps=1, verbose=0, return_dict=True)["loss"]
             - want["loss"]) > 1e-4 * abs(want["loss"])
  w0 = [np.array(v) for v in model.trainable_variables]
  hist = model.fit(as_ds(acc), steps_per_epoch=2, epochs=1, verbose=0).history
  assert np.isfinite(hist["loss"][-1])
  assert any(not np.allclose(a, np.array(b)) for a, b in zip(w0, model.trainable_variables))


JAX_SCRIPT = textwrap.dedent("""
  import sys
  import numpy as np
  import jax
  import keras
  from ctp_tf.layers import synthesis_stage
  assert keras.backend.backend() == "jax"
  work = sys.argv[1]
  batch = dict(np.load(work + "/batch.npz"))
  out = jax.jit(synthesis_stage.finish_clips)(batch)
  np.save(work + "/jax_clip.npy", np.asarray(out))
""")


def test_jax_backend_stage_equals_input_placement(tiny_data_dir, tmp_path):
  (ref,) = _batches(tiny_data_dir, "input", n=1)
  (acc,) = _batches(tiny_data_dir, "accelerator", n=1)
  np.savez(tmp_path / "batch.npz", **acc)
  env = dict(os.environ, KERAS_BACKEND="jax", CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  r = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path)], env=env,
                     capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  _check_close(ref["clip"], np.load(tmp_path / "jax_clip.npy"))
