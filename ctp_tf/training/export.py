"""Export a pretrained encoder as a self-contained SavedModel plus what finetuning restores.

An export directory holds:
- a TensorFlow SavedModel (`saved_model.pb`, `variables/`) whose `serving_default` signature
  takes `clips` (uint8 RGB `[N, T, H, W, 3]`, any N, T/H/W as in `config.json`) and returns
  `features` `[N, 512*width]` and `retrieval_features` `[N, 2*3*3*512*width]`. It is a plain
  TF graph: `tf.saved_model.load(export_dir)` works without ctp_tf (or Keras) importable.
- `config.json`: arch, width multiplier, BN epsilon, clip shape, where the weights came from.
- `encoder.weights.h5`: the standard-stride backbone's Keras weights; `load_encoder` rebuilds the
  backbone from `config.json` and restores them exactly (what `finetune(init_from=...)` uses).

Pretraining uses a backbone whose stage 4 keeps the spatial resolution (stride 8); the paper's
downstream encoder is the standard network (stage 4 downsamples too) with the same weights, so
the export always re-instantiates the standard strides via `standard_backbone_like`.

Export needs the TensorFlow backend (SavedModel is a TF format).

Example:
```python
from ctp_tf import models
from ctp_tf.training import export  # or ctp_tf.downstream.export, the same names
backbone = models.build_backbone("r3d_18", "pretrain", width_multiplier=0.125)
export.export_encoder(backbone, "/tmp/enc", config={"arch": "r3d_18", "width_multiplier": 0.125},
                      clip_shape=(8, 32, 32))
encoder, cfg = export.load_encoder("/tmp/enc", arch="r3d_18")
```
"""

import json
import os
import shutil
import time

import numpy as np

from ctp_tf.errors import UserError
# The adaptive pooling grid of the retrieval features (time, height, width): REFERENCE.md.
from ctp_tf.models.features import RETRIEVAL_GRID

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "encoder.weights.h5"
EXPORT_FORMAT = "ctp_tf.encoder_export"
EXPORT_VERSION = 1


class ExportError(UserError, ValueError):
  """An export directory is missing, incomplete, corrupt or of another architecture."""


class NothingToExport(ExportError, FileNotFoundError):
  """A pretraining workdir without any weights."""


def _model_fields(config):
  """Returns (arch, width_multiplier, bn_epsilon) from a pretraining/finetuning config or dict.

  Accepts a full experiment ConfigDict (with `.model`), its `.model` part, or a plain dict with
  the same keys, so both pretraining and finetuning callers can pass what they hold.
  """
  if config is None:
    raise ValueError("export_encoder needs `config` (with model.arch / width_multiplier).")
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  config = dict(config)
  model = dict(config.get("model", config))
  if "arch" not in model:
    raise ValueError(f"config has no model arch: keys {sorted(model)}")
  return (str(model["arch"]), float(model.get("width_multiplier", 1.0)),
          float(model.get("bn_epsilon", 1e-3)))


def _check_replaceable(export_dir):
  """An older export (or a scratch directory) may be replaced; a file, a workdir or a dataset
  never is (`--export_dir=WORKDIR` would otherwise delete the whole workdir)."""
  from ctp_tf.training import workdir as workdir_lib
  if not os.path.exists(export_dir):
    return
  if not os.path.isdir(export_dir):
    raise ExportError(f"--export_dir={export_dir} exists and is a file; choose a directory.")
  kind = workdir_lib.kind_of(export_dir)
  precious = [n for n in ("backup", "checkpoints", "dataset.json", workdir_lib.KIND_FILE,
                          workdir_lib.LOCK_FILE, "final.weights.h5")
              if os.path.exists(os.path.join(export_dir, n))]
  if kind in workdir_lib.KINDS or precious:
    raise ExportError(f"--export_dir={export_dir} is a {kind or 'data'} directory "
                      f"({', '.join(precious) or 'config.json'}), not an export: it would be "
                      "replaced. Choose a new directory (default: WORKDIR/export).")


def _replace_dir_atomically(tmp_dir, export_dir):
  """Moves a finished `tmp_dir` to `export_dir`, replacing an older export only at the end."""
  old = None
  if os.path.exists(export_dir):
    old = f"{export_dir}.old-{os.getpid()}-{int(time.time())}"
    os.rename(export_dir, old)
  os.rename(tmp_dir, export_dir)
  if old:
    shutil.rmtree(old, ignore_errors=True)


def expected_clips(clip_shape):
  """The text naming what the serving signature accepts, e.g. `uint8 [N, 16, 112, 112, 3]`."""
  t, h, w = (int(v) for v in clip_shape)
  return f"uint8 [N, {t}, {h}, {w}, 3]"


def validate_clips(clips, clip_shape):
  """Graph-side check of a serving input (rank, frame count, size, channels) before any op.

  The signature's input spec has no static shape, so nothing downstream is built for a shape
  the client did not send: a wrong rank or size fails here with an InvalidArgumentError that
  names the expected shape (with oneDNN, a rank-4 or rank-3 tensor reaching the convolutions
  aborted or crashed the process). Returns `clips` with its static shape [None, T, H, W, 3].
  """
  import tensorflow as tf

  t, h, w = (int(v) for v in clip_shape)
  shape = tf.shape(clips)
  # Padded to 5 entries so the comparison below is valid for any rank.
  padded = tf.concat([shape, tf.zeros([5], tf.int32)], 0)[:5]
  ok = tf.logical_and(tf.equal(tf.rank(clips), 5),
                      tf.reduce_all(tf.equal(padded[1:], tf.constant([t, h, w, 3], tf.int32))))
  check = tf.debugging.Assert(
      ok, [f"clips must be {expected_clips(clip_shape)} (N clips of {t} frames); got shape",
           shape], summarize=6, name="check_clips_shape")
  with tf.control_dependencies([check]):
    clips = tf.identity(clips)
  return tf.ensure_shape(clips, [None, t, h, w, 3])


def export_encoder(model_or_backbone, export_dir, *, config, clip_shape=(16, 112, 112),
                   source=None):
  """Writes a SavedModel, `config.json` and `encoder.weights.h5` for the standard-stride encoder.

  Args:
    model_or_backbone: a `CtPModel` (its `.backbone` is used) or a backbone built by
      `ctp_tf.models.build_backbone` (any preset).
    export_dir: output directory; written under a temporary name and renamed when complete,
      so a crash never leaves a half-written export (an older export is replaced at the end).
    config: the experiment config (or its `model` part, or a dict) giving arch, width, BN eps.
    clip_shape: (T, H, W) the serving signature accepts.
    source: free text recorded in config.json (e.g. the checkpoint path).

  Returns:
    The export config dict (as written to `config.json`).
  """
  import keras
  import tensorflow as tf

  from ctp_tf import models

  if keras.backend.backend() != "tensorflow":
    raise RuntimeError("export_encoder writes a TF SavedModel: run with KERAS_BACKEND=tensorflow "
                       f"(current backend: {keras.backend.backend()}).")
  arch, width, bn_eps = _model_fields(config)
  backbone = getattr(model_or_backbone, "backbone", model_or_backbone)
  t, h, w = (int(v) for v in clip_shape)
  # Synchronised BN is a training-time choice; the export is plain inference.
  standard = models.standard_backbone_like(backbone, synchronized_bn=False)
  extractor = models.FeatureExtractor(standard, clip_shape=(t, h, w))

  # Run once so every variable exists and the output sizes can be recorded.
  probe = extractor(np.zeros((1, t, h, w, 3), np.uint8), training=False)
  num_features = int(probe["features"].shape[-1])
  retrieval_dim = int(probe["retrieval_features"].shape[-1])

  export_dir = os.path.abspath(export_dir)
  _check_replaceable(export_dir)
  os.makedirs(os.path.dirname(export_dir), exist_ok=True)
  tmp_dir = f"{export_dir}.tmp-{os.getpid()}"
  shutil.rmtree(tmp_dir, ignore_errors=True)

  archive = keras.export.ExportArchive()
  archive.track(extractor)

  def serve(clips):
    clips = validate_clips(clips, (t, h, w))

    def compute():
      out = extractor(clips, training=False)
      return out["features"], out["retrieval_features"]

    def empty():   # a batch of 0 clips: 0 rows of each output
      return tf.zeros([0, num_features]), tf.zeros([0, retrieval_dim])

    features, retrieval = tf.cond(tf.shape(clips)[0] > 0, compute, empty)
    return {"features": tf.ensure_shape(features, [None, num_features]),
            "retrieval_features": tf.ensure_shape(retrieval, [None, retrieval_dim])}

  # The spec leaves the shape open so that `validate_clips` sees what the client sent (a
  # static [None, T, H, W, 3] spec is not enforced when a signature is called).
  archive.add_endpoint(
      name="serving_default", fn=serve,
      input_signature=[tf.TensorSpec(None, tf.uint8, name="clips")])
  archive.write_out(tmp_dir, verbose=False)

  standard.save_weights(os.path.join(tmp_dir, WEIGHTS_NAME))
  export_config = {
      "format": EXPORT_FORMAT,
      "version": EXPORT_VERSION,
      "arch": arch,
      "width_multiplier": width,
      "bn_epsilon": bn_eps,
      "preset": "standard",
      "clip_shape": [t, h, w],
      "num_features": num_features,
      "retrieval_features": retrieval_dim,
      "retrieval_grid": list(RETRIEVAL_GRID),
      "signature": {"name": "serving_default", "input": "clips",
                    "outputs": ["features", "retrieval_features"]},
      "source": str(source) if source is not None else "",
      "keras_version": keras.__version__,
      "tensorflow_version": tf.__version__,
  }
  with open(os.path.join(tmp_dir, CONFIG_NAME), "w") as f:
    json.dump(export_config, f, indent=2)
  _replace_dir_atomically(tmp_dir, export_dir)
  return export_config


def read_export_config(export_dir):
  """Reads and checks `config.json` of an export; raises ExportError naming what is wrong."""
  if not export_dir:
    raise ExportError("no export directory given.")
  if os.path.isfile(export_dir):
    raise ExportError(f"{export_dir!r} is a file; pass the export directory that holds it "
                      f"({os.path.dirname(os.path.abspath(export_dir))!r}) instead.")
  if not os.path.isdir(export_dir):
    raise ExportError(f"export directory {export_dir!r} does not exist (expected the output of "
                      "scripts/export.py or a pretraining workdir's export/).")
  path = os.path.join(export_dir, CONFIG_NAME)
  from ctp_tf.training import workdir as workdir_lib
  kind = workdir_lib.kind_of(export_dir)
  if kind == "pretrain":
    raise ExportError(f"{export_dir!r} is a pretraining workdir, not an export; pass its export "
                      f"directory ({os.path.join(export_dir, 'export')!r}, written when "
                      "pretraining completes, or by scripts/export.py).")
  if kind == "finetune":
    raise ExportError(f"{export_dir!r} is a finetuning workdir, not an encoder export (exports "
                      "come from pretraining workdirs: scripts/export.py).")
  if not os.path.exists(path):
    raise ExportError(f"{export_dir!r} is not a ctp_tf encoder export: {CONFIG_NAME} is missing.")
  try:
    with open(path) as f:
      cfg = json.load(f)
  except (OSError, ValueError) as e:
    raise ExportError(f"corrupt export: cannot parse {path}: {e}") from e
  if not isinstance(cfg, dict) or cfg.get("format") != EXPORT_FORMAT:
    raise ExportError(f"corrupt export: {path} is not a ctp_tf encoder export config "
                      f"(format {cfg.get('format') if isinstance(cfg, dict) else None!r}).")
  for key in ("arch", "width_multiplier", "clip_shape"):
    if key not in cfg:
      raise ExportError(f"corrupt export: {path} lacks {key!r}.")
  return cfg


def _check_expected(cfg, export_dir, arch, width_multiplier):
  if arch is not None and cfg["arch"] != arch:
    raise ExportError(f"export {export_dir!r} holds a {cfg['arch']} encoder, but {arch} was "
                      "requested (set model.arch to match the export, or export the right model).")
  if (width_multiplier is not None
      and not np.isclose(float(cfg["width_multiplier"]), float(width_multiplier))):
    raise ExportError(f"export {export_dir!r} has width_multiplier {cfg['width_multiplier']}, but "
                      f"{width_multiplier} was requested.")


def load_encoder(export_dir, *, arch=None, width_multiplier=None, synchronized_bn=False):
  """Rebuilds the standard-stride backbone of an export and restores its weights exactly.

  Args:
    export_dir: a directory written by `export_encoder`.
    arch, width_multiplier: if given, the export must match them (ExportError otherwise).
    synchronized_bn: build the backbone with cross-replica BatchNorm (finetuning on several
      replicas); the weights are the same either way.

  Returns:
    (backbone keras.Model, export config dict).
  """
  from ctp_tf import models

  cfg = read_export_config(export_dir)
  _check_expected(cfg, export_dir, arch, width_multiplier)
  weights = os.path.join(export_dir, WEIGHTS_NAME)
  if not os.path.exists(weights):
    raise ExportError(f"incomplete export {export_dir!r}: {WEIGHTS_NAME} is missing.")
  backbone = models.build_backbone(
      cfg["arch"], "standard", width_multiplier=float(cfg["width_multiplier"]),
      bn_epsilon=float(cfg.get("bn_epsilon", 1e-3)), synchronized_bn=synchronized_bn)
  try:
    backbone.load_weights(weights)
  except Exception as e:  # h5py / Keras raise many types for truncated or foreign files
    raise ExportError(f"corrupt export: cannot restore {weights} into a {cfg['arch']} "
                      f"(width {cfg['width_multiplier']}) backbone: {type(e).__name__}: {e}") from e
  return backbone, cfg


def load_serving(export_dir, *, arch=None, width_multiplier=None):
  """Loads the SavedModel of an export with plain `tf.saved_model.load`.

  Returns:
    (fn, config): `fn(clips uint8 [N, T, H, W, 3]) -> {"features", "retrieval_features"}`
    (TF tensors), the `serving_default` concrete function.
  """
  import tensorflow as tf

  cfg = read_export_config(export_dir)
  _check_expected(cfg, export_dir, arch, width_multiplier)
  if not os.path.exists(os.path.join(export_dir, "saved_model.pb")):
    raise ExportError(f"incomplete export {export_dir!r}: saved_model.pb is missing.")
  try:
    loaded = tf.saved_model.load(export_dir)
    fn = loaded.signatures["serving_default"]
  except Exception as e:
    raise ExportError(f"corrupt export: tf.saved_model.load({export_dir!r}) failed: "
                      f"{type(e).__name__}: {e}") from e

  expected = expected_clips(cfg["clip_shape"])

  def call(clips):
    dtype = getattr(clips, "dtype", None)
    if dtype is not None and tf.as_dtype(dtype) != tf.uint8:
      raise tf.errors.InvalidArgumentError(
          None, None, f"clips must be {expected}; got dtype {tf.as_dtype(dtype).name}")
    try:
      clips = tf.convert_to_tensor(clips, tf.uint8)
    except (TypeError, ValueError) as e:
      raise tf.errors.InvalidArgumentError(None, None, f"clips must be {expected}: {e}") from e
    return fn(clips=clips)

  call.loaded = loaded  # keeps the variables alive as long as the function
  return call, cfg


def latest_weights(workdir):
  """The newest weights of a pretraining workdir: its newest backup, else newest checkpoint."""
  from ctp_tf.training import checkpoint as cbs

  backups = cbs.list_backups(os.path.join(workdir, "backup"))
  if backups:
    return backups[0]["weights"]
  ckpt = cbs.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  if ckpt:
    return ckpt
  raise FileNotFoundError(f"no backup/ckpt-*.weights.h5 or checkpoints/epoch-*.weights.h5 in "
                          f"{workdir!r}: nothing to export (has pretraining run there?).")


def load_ctp_workdir(workdir, *, checkpoint=None):
  """Rebuilds the CtP model (backbone and head) of a pretraining workdir and loads its newest
  (or the given) weights.

  Returns:
    (model, config, weights path).
  """
  import ml_collections

  from ctp_tf import models

  from ctp_tf.training import workdir as workdir_lib

  if not os.path.isdir(workdir):
    raise ExportError(f"--workdir={workdir} does not exist or is not a directory.")
  as_config = lambda saved: ml_collections.ConfigDict(saved.get("config", saved))  # noqa: E731
  config = as_config(workdir_lib.read_config(
      workdir, "pretrain", error=ExportError,
      check=lambda saved: as_config(saved).synthesis.num_trajectories, other_kinds={
          "export": "already an encoder export; export.py reads a pretraining workdir.",
          "finetune": "a finetuning workdir; the encoder export is made from a pretraining "
                      "workdir (scripts/pretrain.py)."}))
  if checkpoint:
    candidates = [checkpoint]
    if not os.path.exists(checkpoint):
      raise ExportError(f"--checkpoint {checkpoint!r} does not exist.")
  else:
    from ctp_tf.training import checkpoint as cbs
    candidates = [s["weights"] for s in cbs.list_states(os.path.join(workdir, "backup"),
                                                        os.path.join(workdir, "checkpoints"))]
    if not candidates:
      raise NothingToExport(f"no backup/ckpt-*.weights.h5 or checkpoints/epoch-*.weights.h5 in "
                        f"{workdir!r}: nothing to export (has pretraining run there?).")
  t, h, w = _clip_shape(config)
  num_boxes = int(config.synthesis.num_trajectories)
  model = models.build_ctp_model(config.model, clip_shape=(t, h, w), num_boxes=num_boxes)
  boxes = np.tile(np.array([0, 0, min(8, w - 1), min(8, h - 1)], np.float32),
                  (1, num_boxes, t, 1))
  model({"clip": np.zeros((1, t, h, w, 3), np.uint8), "boxes": boxes}, training=False)
  errors = []
  for weights in candidates:   # newest first; a damaged file falls back to an older one
    try:
      # The backups also hold optimizer state; only the model's variables are needed here.
      model.load_weights(weights, skip_mismatch=False)
      return model, config, weights
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"{weights}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
  raise ExportError(f"cannot load the weights into the {config.model.arch} CtP model of "
                    f"{os.path.join(workdir, 'config.json')}: " + "; ".join(errors))


def _clip_shape(config):
  return (int(config.data.clip_len), int(config.data.crop_size), int(config.data.crop_size))


def export_from_workdir(workdir, export_dir, *, checkpoint=None):
  """Exports the encoder of a pretraining workdir's newest (or the given) weights
  (`scripts/export.py`).

  Returns:
    The export config dict.
  """
  model, config, weights = load_ctp_workdir(workdir, checkpoint=checkpoint)
  return export_encoder(model, export_dir, config=config, clip_shape=_clip_shape(config),
                        source=os.path.abspath(weights))
