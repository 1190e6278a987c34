"""The whole CtP protocol on the embedded demo data, with an honest comparison.

For each seed: CtP pretraining (`configs/demo.py`) -> export -> zero-shot tracking of the test
videos' own object (`ctp_tf.demo_tracking`: does the pretext transfer?) -> retrieval with the
CtP encoder and with a random encoder of the same architecture -> finetuning from scratch and
from the CtP export (same config, budget and seed) -> 10-clip evaluation of both. Then
`report.md` with a table of what the runs produced (mean and spread over seeds) and figures.

Every stage writes into its own directory and is skipped when its result exists, so a killed
demo re-run continues where it stopped (pretraining and finetuning resume mid-run themselves).

`tiny=True` runs the same stages at toy size (seconds per stage) for the test suite.
"""

import csv
import json
import os
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Toy sizes for `--tiny`: the same stages, a model and data small enough for the test suite.
TINY_DATA = dict(train_per_class=3, test_per_class=2, width=48, height=40, min_frames=12,
                 max_frames=16)


STAGES = ("pretrain", "object_tracking", "random_encoder", "retrieval_ctp", "retrieval_random",
          "finetune_scratch", "evaluate_scratch", "finetune_ctp", "evaluate_ctp")


def _load_config(name):
  import importlib.util
  path = os.path.join(REPO, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"ctp_tf_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def pretrain_config(tiny, seed):
  c = _load_config("demo")
  c.train.seed = seed
  c.train.verbose = 2 if not tiny else 0
  if tiny:
    c.data.clip_len = 8
    c.data.short_sides = (32, 36)
    c.data.crop_size = 32
    c.data.shuffle_buffer = 8
    c.synthesis.scales = (6, 8, 12)
    c.synthesis.speed = 1.0
    c.model.width_multiplier = 0.125
    c.model.hidden = 16
    c.train.batch_size = 4
    c.train.epochs = 2
    c.train.steps_per_epoch = 2
    c.train.backup_every_steps = 2
    c.train.log_images = False
  return c


def finetune_config(tiny, seed):
  c = _load_config("finetune_demo")
  c.train.seed = seed
  c.train.verbose = 2 if not tiny else 0
  if tiny:
    c.data.clip_len = 8
    c.data.stride = 1
    c.data.crop_size = 32
    c.data.sizes = ((40, 32), (44, 36))
    c.data.test_resize = (40, 32)
    c.data.num_test_clips = 2
    c.data.shuffle_buffer = 8
    c.model.width_multiplier = 0.125
    c.train.batch_size = 4
    c.train.epochs = 2
    c.train.eval_every_epochs = 1
    c.train.steps_per_epoch = 2
  return c


class _Stages:
  """Times stages and skips the ones whose result file already exists."""

  def __init__(self, path):
    self.path = path
    self.times = json.load(open(path)) if os.path.exists(path) else {}

  def run(self, name, result_path, fn):
    if result_path and os.path.exists(result_path) and name in self.times:
      print(f"[demo] {name}: done before ({self.times[name]:.0f} s), skipped", flush=True)
      with open(result_path) as f:
        return json.load(f)
    print(f"[demo] {name} ...", flush=True)
    t0 = time.time()
    result = fn()
    if result_path:
      _write_json(result_path, result)
    self.times[name] = time.time() - t0
    _write_json(self.path, self.times)
    print(f"[demo] {name}: {self.times[name]:.0f} s", flush=True)
    return result


def _write_json(path, obj):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=float)
  os.replace(tmp, path)


def _retrieval(export_dir, data_dir, cache, num_clips, resize):
  from ctp_tf.downstream import export, retrieval
  serve, cfg = export.load_serving(export_dir)
  return retrieval.run_retrieval(serve, cfg, data_dir, num_clips=num_clips, resize=resize,
                                 features_cache=cache, cache_key=os.path.abspath(export_dir))


def run_seed(seed, out_dir, data_dir, *, tiny=False):
  """All stages for one seed; returns the row of numbers for the report."""
  from ctp_tf.downstream import evaluate, finetune, retrieval
  from ctp_tf.training import pretrain

  d = os.path.join(out_dir, f"seed{seed}")
  os.makedirs(d, exist_ok=True)
  stages = _Stages(os.path.join(d, "stage_seconds.json"))
  pcfg = pretrain_config(tiny, seed)
  fcfg = finetune_config(tiny, seed)
  clip_shape = (pcfg.data.clip_len, pcfg.data.crop_size, pcfg.data.crop_size)
  test_resize = tuple(fcfg.data.test_resize)
  num_clips = int(fcfg.data.num_test_clips)

  pre = stages.run("pretrain", os.path.join(d, "pretrain_result.json"),
                   lambda: _jsonable(pretrain.train(pcfg, data_dir=data_dir,
                                                    workdir=os.path.join(d, "pretrain"))))
  ctp_export = os.path.join(d, "pretrain", "export")

  def object_tracking():
    # Whether the tracking learned on pasted patches carries over to the object whose motion
    # defines the class: the question the finetuning comparison alone cannot answer.
    from ctp_tf import demo_tracking
    from ctp_tf.downstream import export
    clips, boxes = demo_tracking.object_clips(data_dir, clip_len=int(pcfg.data.clip_len),
                                              crop_size=int(pcfg.data.crop_size))
    model = export.load_ctp_workdir(os.path.join(d, "pretrain"))[0]
    return demo_tracking.tracking_iou(model, clips, boxes, pcfg.synthesis, seed=seed)

  track = stages.run("object_tracking", os.path.join(d, "object_tracking.json"), object_tracking)

  def random_export():
    path = os.path.join(d, "random_export")
    retrieval.random_encoder_export(path, arch=pcfg.model.arch,
                                    width_multiplier=pcfg.model.width_multiplier,
                                    clip_shape=clip_shape, seed=seed + 1000)
    return {"export": path}

  stages.run("random_encoder", os.path.join(d, "random_export.json"), random_export)
  ret_kw = dict(data_dir=data_dir, num_clips=num_clips, resize=test_resize)
  ret_ctp = stages.run("retrieval_ctp", os.path.join(d, "retrieval_ctp.json"),
                       lambda: _retrieval(ctp_export, cache=os.path.join(d, "feat_ctp.npz"),
                                          **ret_kw))
  ret_rand = stages.run("retrieval_random", os.path.join(d, "retrieval_random.json"),
                        lambda: _retrieval(os.path.join(d, "random_export"),
                                           cache=os.path.join(d, "feat_random.npz"), **ret_kw))

  runs = {}
  for name, init in (("scratch", None), ("ctp", ctp_export)):
    wd = os.path.join(d, f"finetune_{name}")
    stages.run(f"finetune_{name}", os.path.join(d, f"finetune_{name}.json"),
               lambda wd=wd, init=init: _jsonable(finetune.finetune(
                   fcfg, data_dir=data_dir, workdir=wd, init_from=init)))
    runs[name] = stages.run(
        f"evaluate_{name}", os.path.join(d, f"evaluate_{name}.json"),
        lambda wd=wd: _jsonable(evaluate.evaluate(wd, data_dir, num_clips=num_clips)))

  return {
      "seed": seed,
      "finetune_val_top1": {name: _val_curve(os.path.join(d, f"finetune_{name}", "history.json"))
                            for name in ("scratch", "ctp")},
      "retrieval_ctp": {k: ret_ctp[k] for k in ("top1", "top5", "top10")},
      "retrieval_random": {k: ret_rand[k] for k in ("top1", "top5", "top10")},
      "finetune_scratch": {k: runs["scratch"][k] for k in ("top1", "top5")},
      "finetune_ctp": {k: runs["ctp"][k] for k in ("top1", "top5")},
      "pretext_iou": pre.get("iou"),
      "pretext_iou_static": pre.get("iou_static"),
      "tracking": track,
      "seconds": dict(stages.times),
      "dir": d,
  }


def _val_curve(history_path):
  """{epoch: 10-clip val top-1} of a finetuning run, from its history.json."""
  if not os.path.exists(history_path):
    return {}
  with open(history_path) as f:
    epochs = json.load(f).get("epochs", [])
  return {str(int(e["epoch"])): float(e["val_top1"]) for e in epochs
          if e.get("val_top1") is not None and np.isfinite(e["val_top1"])}


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.floating, np.integer)):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  return obj


# ------------------------------------------------------------------------------------ figures

def plot_pretrain_curves(workdirs, out):
  """Loss and IoU (vs the static guess) per epoch of the pretraining runs, from `log.csv`."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
  for i, wd in enumerate(workdirs):
    with open(os.path.join(wd, "log.csv")) as f:
      rows = list(csv.DictReader(f))
    epochs = [int(float(r["epoch"])) + 1 for r in rows]
    label = os.path.basename(os.path.dirname(wd))
    ax1.plot(epochs, [float(r["loss"]) for r in rows], color=f"C{i}", label=label)
    ax2.plot(epochs, [float(r["iou"]) for r in rows], color=f"C{i}", label=f"{label} predicted")
    ax2.plot(epochs, [float(r["iou_static"]) for r in rows], color=f"C{i}", ls="--",
             label=f"{label} static guess")
  ax1.set(xlabel="epoch", ylabel="loss", title="CtP pretraining loss")
  ax2.set(xlabel="epoch", ylabel="mean IoU, frames 1..T-1", title="Tracking IoU")
  ax1.legend(fontsize=7)
  ax2.legend(fontsize=7)
  fig.tight_layout()
  tmp = out + ".tmp.png"
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, out)
  return out


def plot_trajectory_examples(data_dir, config, out_png, out_gif, seed):
  from ctp_tf import plots
  return plots.render_pretrain_examples(data_dir, config, out_png, gif_path=out_gif,
                                        num_clips=3, seed=seed)["png"]


def gradcam_example(workdir, data_dir, config, out_png, out_gif):
  from ctp_tf.downstream import finetune, gradcam
  from ctp_tf.data import finetune_input

  model, cfg, _ = finetune.load_finetuned(workdir)
  ds = finetune_input.eval_dataset(
      data_dir, cfg.data.test_split, num_clips=1, clip_len=int(cfg.data.clip_len),
      stride=int(cfg.data.stride), resize=tuple(cfg.data.test_resize),
      crop_size=int(cfg.data.crop_size), batch_size=1)
  batch = next(iter(ds))
  clip = batch["clips"].numpy()[0, 0]
  maps = gradcam.guided_grad_cam(model, clip)
  gradcam.save_visualisation(clip, maps, out_png, out_gif,
                             title=f"test video 0, class {int(batch['label'][0])}")
  return out_png


# ------------------------------------------------------------------------------------- report

def _stat(values, digits=3):
  values = [v for v in values if v is not None]
  if not values:
    return "n/a"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def summary_table(rows):
  """Markdown table of the runs: mean ± sample std over seeds (one seed: the value)."""
  g = lambda *path: [_dig(r, path) for r in rows]  # noqa: E731
  lines = [
      f"| metric | CtP | baseline | seeds |",
      "| --- | --- | --- | --- |",
  ]
  n = len(rows)
  for k in ("top1", "top5", "top10"):
    lines.append(f"| retrieval {k} (baseline: random encoder) | "
                 f"{_stat(g('retrieval_ctp', k))} | {_stat(g('retrieval_random', k))} | {n} |")
  for k in ("top1", "top5"):
    lines.append(f"| finetune {k} (baseline: scratch) | "
                 f"{_stat(g('finetune_ctp', k))} | {_stat(g('finetune_scratch', k))} | {n} |")
  lines.append(f"| pretext IoU, frames 1..T-1 (baseline: static guess) | "
               f"{_stat(g('pretext_iou'))} | {_stat(g('pretext_iou_static'))} | {n} |")
  lines.append(f"| zero-shot IoU on patches pasted into the test clips (baseline: static guess) | "
               f"{_stat(g('tracking', 'pasted_iou'))} | "
               f"{_stat(g('tracking', 'pasted_iou_static'))} | {n} |")
  lines.append(f"| zero-shot IoU on the test videos' own object (baseline: static guess) | "
               f"{_stat(g('tracking', 'object_iou'))} | "
               f"{_stat(g('tracking', 'object_iou_static'))} | {n} |")
  epochs = sorted({int(e) for r in rows for arm in (r.get("finetune_val_top1") or {}).values()
                   for e in arm})
  if epochs:   # how fast each arm gets there (the paper's Figure 1), not only where it ends
    lines.append("")
    lines.append("| finetune epoch | val top-1 from CtP | val top-1 from scratch |")
    lines.append("| --- | --- | --- |")
    for e in epochs:
      lines.append(f"| {e} | {_stat(g('finetune_val_top1', 'ctp', str(e)))} | "
                   f"{_stat(g('finetune_val_top1', 'scratch', str(e)))} |")
  stages = [s for s in STAGES if any(s in r["seconds"] for r in rows)]
  lines.append("")
  lines.append("| stage | wall time (s) |")
  lines.append("| --- | --- |")
  for s in stages:
    lines.append(f"| {s} | {_stat(g('seconds', s), digits=0)} |")
  return "\n".join(lines)


def _dig(d, path):
  for p in path:
    if not isinstance(d, dict) or p not in d:
      return None
    d = d[p]
  return d


def verdict(rows, pretext_margin=0.01):
  """Plain-language reading of the table: what beat what, per seed, without rounding it up."""
  def wins(a, b, margin=0.0):
    return sum(1 for r in rows if _dig(r, a) is not None and _dig(r, b) is not None
               and _dig(r, a) > _dig(r, b) + margin)
  n = len(rows)
  learned = wins(("pretext_iou",), ("pretext_iou_static",), pretext_margin)
  parts = [
      f"CtP finetuning beat scratch on top-1 in {wins(('finetune_ctp', 'top1'), ('finetune_scratch', 'top1'))} of {n} seeds.",
      f"CtP retrieval beat the random encoder on top-1 in {wins(('retrieval_ctp', 'top1'), ('retrieval_random', 'top1'))} of {n} seeds.",
      f"The pretext IoU beat the static guess by more than {pretext_margin} in {learned} of {n} "
      "seeds.",
  ]
  if learned == 0:
    parts.append("So the network did not learn to track the patches in this budget: any "
                 "difference in the rows above does not come from learned tracking.")
  measured = sum(1 for r in rows if _dig(r, ("tracking", "object_iou")) is not None)
  if measured:
    tracks = wins(("tracking", "object_iou"), ("tracking", "object_iou_static"), pretext_margin)
    parts.append(f"Given only its frame-0 box, the pretrained model followed the test videos' "
                 f"own object better than the static guess (by more than {pretext_margin}) in "
                 f"{tracks} of {measured} seeds.")
    if learned and not tracks:
      parts.append("So the tracking it learned on pasted patches did not carry over to the "
                   "object whose motion defines the classes.")
  return " ".join(parts)


def write_report(out_dir, rows, figures, *, tiny):
  lines = ["# CtP on the demo data", ""]
  lines.append("Each number below was produced by this run (`scripts/demo.py"
               + (" --tiny" if tiny else "") + "`); nothing is fixed in code. "
               "Values are mean ± sample standard deviation over seeds "
               f"{', '.join(str(r['seed']) for r in rows)}.")
  lines += ["", summary_table(rows), "", verdict(rows), ""]
  lines.append("## Per seed")
  lines.append("")
  lines.append("```json")
  lines.append(json.dumps(_jsonable(rows), indent=1, sort_keys=True))
  lines.append("```")
  lines.append("")
  lines.append("## Figures")
  for title, path in figures.items():
    if path:
      lines.append(f"### {title}")
      lines.append(f"![{title}]({os.path.relpath(path, out_dir)})")
      lines.append("")
  path = os.path.join(out_dir, "report.md")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(tmp, path)
  _write_json(os.path.join(out_dir, "results.json"), _jsonable(rows))
  return path


def run_demo(out_dir="runs/demo", *, seeds=(0,), tiny=False, data_dir=None):
  """Runs every stage for each seed and writes `out_dir/report.md`; returns the rows."""
  from ctp_tf import demo_assets
  from ctp_tf.downstream import export  # noqa: F401  (fail early if the package is broken)
  from ctp_tf import curves

  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  t0 = time.time()
  if data_dir is None:
    print("[demo] demo data (made and converted on first use) ...", flush=True)
    if tiny:
      data_dir = demo_assets.ensure_demo_data(os.path.join(out_dir, "data"),
                                              **TINY_DATA)
    else:
      data_dir = demo_assets.ensure_demo_data()
    print(f"[demo] demo data: {data_dir} ({time.time() - t0:.0f} s)", flush=True)

  rows = [run_seed(s, out_dir, data_dir, tiny=tiny) for s in seeds]

  figdir = os.path.join(out_dir, "figures")
  os.makedirs(figdir, exist_ok=True)
  first = rows[0]["dir"]
  figures = {}
  figures["Synthesised trajectories (solid: visible, dashed: hidden)"] = _try(
      plot_trajectory_examples, data_dir, pretrain_config(tiny, seeds[0]),
      os.path.join(figdir, "trajectories.png"), os.path.join(figdir, "trajectories.gif"),
      seeds[0])
  figures["Pretraining loss and tracking IoU"] = _try(
      plot_pretrain_curves, [os.path.join(r["dir"], "pretrain") for r in rows],
      os.path.join(figdir, "pretrain_curves.png"))
  figures["Finetuning: scratch vs CtP (seed Figure 1 style)"] = _try(
      curves.plot_curves, [os.path.join(first, "finetune_scratch"),
                           os.path.join(first, "finetune_ctp")],
      ["scratch", "CtP"], os.path.join(figdir, "finetune_curves.png"))
  figures["Guided Grad-CAM, CtP-finetuned classifier"] = _try(
      gradcam_example, os.path.join(first, "finetune_ctp"), data_dir, None,
      os.path.join(figdir, "gradcam.png"), os.path.join(figdir, "gradcam.gif"))

  report = write_report(out_dir, rows, figures, tiny=tiny)
  print()
  print(summary_table(rows))
  print()
  print(verdict(rows))
  print(f"\n[demo] report: {report} (total {time.time() - t0:.0f} s)")
  return rows


def _try(fn, *args):
  """Figures are extras: one that fails is reported and left out, the numbers still stand."""
  try:
    return fn(*args)
  except Exception as e:  # pylint: disable=broad-except
    print(f"[demo] figure {fn.__name__} failed: {type(e).__name__}: {e}", flush=True)
    return None
