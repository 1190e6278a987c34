"""A finetuning workdir as its readers see it: file names, the classifier, loading.

`finetune.py` writes these workdirs; `evaluate.py`, `gradcam.py` and the demo read them
through `load_finetuned`. Both sides import this module, so neither imports the other.

Example:
```python
from ctp_tf.downstream import finetuned
model, config, info = finetuned.load_finetuned("runs/ft_ctp")
```
"""

import os

import numpy as np

from ctp_tf.errors import WorkdirError

FINAL_WEIGHTS = "final.weights.h5"
HISTORY = "history.json"
CONFIG = "config.json"


class MissingWorkdirFile(WorkdirError, FileNotFoundError):
  """A finetuning workdir without its config or final weights."""


def _config_from_dict(d):
  import ml_collections
  return ml_collections.ConfigDict(d)


def build_classifier(config, num_classes, *, init_from=None, synchronized_bn=False):
  """Standard backbone (scratch or restored from an export) + VideoClassifier.

  `synchronized_bn`: cross-replica BatchNorm (as pretraining uses with several replicas).

  Returns:
    (classifier keras.Model, export config dict or None).
  """
  from ctp_tf import models
  from ctp_tf.downstream import export

  m = config.model
  export_cfg = None
  if init_from:
    backbone, export_cfg = export.load_encoder(init_from, arch=m.arch,
                                               width_multiplier=m.width_multiplier,
                                               synchronized_bn=synchronized_bn)
  else:
    backbone = models.build_backbone(m.arch, "standard", width_multiplier=m.width_multiplier,
                                     bn_epsilon=m.bn_epsilon, synchronized_bn=synchronized_bn)
  model = models.VideoClassifier(backbone, num_classes, dropout=m.dropout)
  return model, export_cfg


def workdir_info(workdir):
  """The `config.json` dict of a finetuning workdir (config, classes, num_classes, ...);
  WorkdirError (one line) for a pretraining workdir or a directory without it."""
  from ctp_tf.training import workdir as workdir_lib

  return workdir_lib.read_config(
      workdir, "finetune", check=lambda info: info["config"]["model"],
      missing_error=MissingWorkdirFile, other_kinds={
          "export": "an encoder export, not a finetuning workdir.",
          "pretrain": "a pretraining workdir; this needs a finetuning workdir "
                      "(scripts/finetune.py --init_from=<its export> --workdir=<a new "
                      "directory>)."})


def load_finetuned(workdir, weights=None):
  """Rebuilds the classifier of a finetuning workdir and loads its final (or given) weights.

  Returns:
    (model, config ConfigDict, info dict with "classes", "num_classes", "weights").
  """
  info = workdir_info(workdir)
  config = _config_from_dict(info["config"])
  weights = weights or os.path.join(workdir, FINAL_WEIGHTS)
  if not os.path.exists(weights):
    raise MissingWorkdirFile(f"{weights} not found: finetuning in {workdir!r} has not finished "
                            "(rerun scripts/finetune.py with the same --workdir to resume).")
  model, _ = build_classifier(config, int(info["num_classes"]))
  build_variables(model, config)
  model.load_weights(weights)
  info["weights"] = weights
  return model, config, info


def build_variables(model, config):
  """Creates the variables with one small forward pass (needed before load_weights)."""
  d = config.data
  model(np.zeros((1, int(d.clip_len), int(d.crop_size), int(d.crop_size), 3), np.uint8),
        training=False)
