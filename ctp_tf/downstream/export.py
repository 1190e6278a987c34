"""The encoder export, as downstream tasks see it: `ctp_tf.training.export` re-exported.

The export format is written at the end of pretraining, so it lives with training
(`ctp_tf/training/export.py`); finetuning, retrieval, Grad-CAM and `scripts/export.py` read it
through this name, as `INTERFACES.md` documents (`ctp_tf.downstream.export.export_encoder`, ...).

Example:
```python
from ctp_tf.downstream import export
encoder, cfg = export.load_encoder("runs/pretrain/export")
```
"""

from ctp_tf.training.export import (  # noqa: F401
    CONFIG_NAME,
    WEIGHTS_NAME,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    RETRIEVAL_GRID,
    ExportError,
    NothingToExport,
    expected_clips,
    validate_clips,
    export_encoder,
    read_export_config,
    load_encoder,
    load_serving,
    latest_weights,
    load_ctp_workdir,
    export_from_workdir,
)

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "RETRIEVAL_GRID",
    "ExportError",
    "NothingToExport",
    "expected_clips",
    "validate_clips",
    "export_encoder",
    "read_export_config",
    "load_encoder",
    "load_serving",
    "latest_weights",
    "load_ctp_workdir",
    "export_from_workdir",
]
