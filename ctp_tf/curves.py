"""Training curves of finetuning runs (the seed's supplementary Figure 1).

Two panels: training loss per epoch and 10-clip validation top-1 per evaluated epoch, one line
per run (e.g. scratch vs CtP-initialised), read from each run's `history.json`
(written by `ctp_tf.downstream.finetune`).

Example:
```python
from ctp_tf import curves
curves.plot_curves(["runs/ucf_scratch", "runs/ucf_ctp"], ["scratch", "CtP"], "fig1.png")
```
"""

import json
import os

from ctp_tf import figures


def read_history(run_dir):
  """(epochs, loss, val_epochs, val_top1) lists from `run_dir/history.json` (or a JSON path)."""
  path = run_dir if run_dir.endswith(".json") else os.path.join(run_dir, "history.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: --runs must name finetuning workdirs.")
  with open(path) as f:
    entries = json.load(f)["epochs"]
  epochs = [e["epoch"] for e in entries]
  loss = [e.get("loss") for e in entries]
  val = [(e["epoch"], e["val_top1"]) for e in entries if e.get("val_top1") is not None]
  return epochs, loss, [v[0] for v in val], [v[1] for v in val]


def plot_curves(runs, labels, out, *, title="Finetuning"):
  """Writes a PNG with loss and validation-accuracy curves for the given runs (atomically).

  Args:
    runs: finetuning workdirs (or history.json paths).
    labels: legend names, one per run.
    out: PNG path.

  Returns:
    `out`.
  """
  plt = figures.pyplot()

  if len(runs) != len(labels):
    raise ValueError(f"{len(runs)} runs but {len(labels)} labels: give one label per run.")
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  for run, label in zip(runs, labels):
    epochs, loss, val_epochs, val_top1 = read_history(run)
    ax_loss.plot(epochs, loss, label=label)
    ax_acc.plot(val_epochs, [100 * v for v in val_top1], marker="o", label=label)
  ax_loss.set_xlabel("epoch")
  ax_loss.set_ylabel("training loss")
  ax_loss.set_title(f"{title}: training loss")
  ax_acc.set_xlabel("epoch")
  ax_acc.set_ylabel("validation top-1 (%), 10 clips")
  ax_acc.set_title(f"{title}: validation accuracy")
  for ax in (ax_loss, ax_acc):
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  return figures.save_figure(fig, out, dpi=110)
