"""The whole CtP protocol with paired, per-seed comparisons against baselines.

For each seed: CtP pretraining (`configs/demo.py`) -> export -> zero-shot tracking of the test
videos' own object (`ctp_tf.demo.tracking`, demo data only: it needs the object boxes) ->
retrieval and frozen-encoder probes (kNN; linear, on all and on few labels) with the CtP
encoder and with a random encoder of the same architecture -> per-seed splits
(`ctp_tf.demo.splits`: a validation set carved from the
training videos for the per-epoch curves, and a stratified few-label training set) ->
finetuning from scratch and from the CtP export on all labels and on few labels (same config,
budget and seed for both arms) -> multi-clip evaluation on the test split.

Then `results.json` with `comparisons` (`ctp_tf.demo.stats`: paired 95% t-intervals over
seeds and a verdict each) and `report.md`, whose first table is built from them.

Every stage writes into its own directory and is skipped when its result exists, so a killed
demo re-run continues where it stopped (pretraining and finetuning resume mid-run themselves).

`tiny=True` runs the same stages at toy size (seconds per stage) for the test suite.
"""

import csv
import json
import os
import time

import numpy as np

from ctp_tf import defaults, figures
from ctp_tf.errors import UserError

# Toy sizes for `--tiny`: the same stages, a model and data small enough for the test suite.
TINY_DATA = dict(train_per_class=3, test_per_class=2, width=48, height=40, min_frames=12,
                 max_frames=16)


ARMS = ("scratch", "ctp", "few_scratch", "few_ctp")
STAGES = ("pretrain", "object_tracking", "random_encoder", "retrieval_ctp", "retrieval_random",
          "splits") + tuple(f"{kind}_{arm}" for arm in ARMS for kind in ("finetune", "evaluate"))


class DemoInputError(UserError, ValueError):
  """A user mistake in the demo's inputs (data directory, config files): one line, exit 2."""


PROBE_K = 10          # the frozen-encoder probe: k-nearest-neighbour vote over training videos


def _load_config(name_or_path):
  """`get_config()` of a config file, or of a config shipped with ctp_tf by name ("demo")."""
  from ctp_tf.training import config_utils
  try:
    return config_utils.load_config_file(name_or_path)
  except config_utils.ConfigFileError as e:
    raise DemoInputError(str(e)) from None


def pretrain_config(tiny, seed, path=None):
  c = _load_config(path or "demo")
  c.train.seed = seed
  c.train.verbose = 2 if not tiny else 0
  if tiny:   # the library's toy sizes, a batch of 4 and 2 x 2 steps
    defaults.tiny_pretrain(c)
    c.synthesis.scales = (6, 8, 12)
    c.model.hidden = 16
    c.train.batch_size = 4
    c.train.steps_per_epoch = 2
  # The pretext comparisons score the model on held-out test videos at the middle and at the
  # end of pretraining (`ctp_tf.training.pretext_validation`): make sure both are evaluated.
  if "eval_split" not in c.data:
    c.data.eval_split = "test"
  every = int(c.train.get("eval_every_epochs", 0) or 0)
  if not every or mid_epoch(int(c.train.epochs)) % every:
    c.train.eval_every_epochs = mid_epoch(int(c.train.epochs))
  if "eval_seed" not in c.train:
    c.train.eval_seed = 0
  return c


def mid_epoch(epochs):
  """The middle of pretraining: after epoch ceil(E / 2)."""
  return (int(epochs) + 1) // 2


FEW_LABEL_DEFAULTS = dict(fraction=0.1, val_per_class=2, epochs=8, steps_per_epoch=4,
                         eval_every_epochs=2, decay_epochs=(7,))


def finetune_config(tiny, seed, path=None):
  import ml_collections
  c = _load_config(path or "finetune_demo")
  if "few_label" not in c:   # a config written for scripts/finetune.py: the demo's defaults
    c.few_label = ml_collections.ConfigDict(FEW_LABEL_DEFAULTS)
  c.train.seed = seed
  c.train.verbose = 2 if not tiny else 0
  if tiny:   # the library's toy sizes, a batch of 4, and a toy few-label arm
    defaults.tiny_finetune(c)
    c.data.stride = 1
    c.data.sizes = ((40, 32), (44, 36))
    c.data.test_resize = (40, 32)
    c.train.batch_size = 4
    c.few_label.update(fraction=0.34, val_per_class=1, epochs=2, steps_per_epoch=2,
                       eval_every_epochs=1, decay_epochs=())
  return c


def few_label_config(fcfg):
  """The few-label arm's finetuning config: `fcfg` with its `few_label` epochs/steps."""
  c = fcfg.copy_and_resolve_references()
  c.data.train_split = "train_few"
  c.train.epochs = int(fcfg.few_label.epochs)
  c.train.steps_per_epoch = int(fcfg.few_label.steps_per_epoch)
  c.train.eval_every_epochs = int(fcfg.few_label.eval_every_epochs)
  c.optimizer.decay_epochs = tuple(fcfg.few_label.decay_epochs)
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


def knn_probe(cache_path, k=PROBE_K):
  """Top-1 of a k-nearest-neighbour vote (cosine similarity, ties to the nearest) of each test
  video among the training videos, on the features `retrieval.run_retrieval` cached: a
  frozen-encoder probe with nothing fitted."""
  from ctp_tf.downstream import retrieval
  with np.load(cache_path) as z:
    q, ql, g, gl = (z[n] for n in ("query", "query_labels", "gallery", "gallery_labels"))
  ql, gl = ql.astype(np.int64), gl.astype(np.int64)
  k = min(int(k), len(gl))
  idx, _ = retrieval.topk_neighbours(q, g, k)
  votes = np.zeros((len(ql), int(max(gl.max(), ql.max())) + 1))
  for rank in range(k):   # weight k - rank: the vote is a majority, ties go to nearer neighbours
    np.add.at(votes, (np.arange(len(ql)), gl[idx[:, rank]]), k - rank)
  pred = votes.argmax(1)
  return {"top1": float(np.mean(pred == ql)), "k": k, "num_queries": int(len(ql))}


def linear_probe(cache_path, seed, *, val_per_class, few_fraction):
  """Test top-1 of a softmax regression on the frozen encoder's cached retrieval features
  (`ctp_tf.downstream.linear_probe`), fitted on the training videos minus the validation ones
  (`top1`) and on the few-label subset (`few_top1`): the seeded stratified `split_plan` the
  finetuning splits use, over the training videos in split-list order."""
  from ctp_tf.demo import splits as demo_splits
  from ctp_tf.downstream.linear_probe import probe_top1
  with np.load(cache_path) as z:
    q, ql, g, gl, gi = (z[n] for n in ("query", "query_labels", "gallery", "gallery_labels",
                                       "gallery_index"))
  order = np.argsort(gi, kind="stable")
  g, gl = g[order], gl[order].astype(np.int64)
  _, train, few = demo_splits.split_plan(gl, seed, val_per_class=val_per_class,
                                         few_fraction=few_fraction)
  k = int(max(gl.max(), ql.max())) + 1
  return {"top1": probe_top1(g[train], gl[train], q, ql, k),
          "few_top1": probe_top1(g[few], gl[few], q, ql, k),
          "train_videos": len(train), "few_videos": len(few)}


def run_seed(seed, out_dir, data_dir, *, tiny=False, pretrain_path=None, finetune_path=None):
  """All stages for one seed; returns the row of numbers for the report."""
  from ctp_tf.demo import splits as demo_splits, tracking as demo_tracking
  from ctp_tf.downstream import evaluate, finetune, retrieval
  from ctp_tf.training import pretrain

  d = os.path.join(out_dir, f"seed{seed}")
  os.makedirs(d, exist_ok=True)
  stages = _Stages(os.path.join(d, "stage_seconds.json"))
  pcfg = pretrain_config(tiny, seed, pretrain_path)
  fcfg = finetune_config(tiny, seed, finetune_path)
  clip_shape = (pcfg.data.clip_len, pcfg.data.crop_size, pcfg.data.crop_size)
  test_resize = tuple(fcfg.data.test_resize)
  num_clips = int(fcfg.data.num_test_clips)

  pre = stages.run("pretrain", os.path.join(d, "pretrain_result.json"),
                   lambda: _jsonable(pretrain.train(pcfg, data_dir=data_dir,
                                                    workdir=os.path.join(d, "pretrain"))))
  ctp_export = os.path.join(d, "pretrain", "export")

  track = None
  meta_path = demo_tracking.meta_path_for(data_dir)
  if meta_path:
    def object_tracking():
      # Whether the tracking learned on pasted patches carries over to the object whose motion
      # defines the class: the question the finetuning comparison alone cannot answer.
      from ctp_tf.downstream import export
      clips, boxes = demo_tracking.object_clips(data_dir, meta_path,
                                                clip_len=int(pcfg.data.clip_len),
                                                crop_size=int(pcfg.data.crop_size))
      model = export.load_ctp_workdir(os.path.join(d, "pretrain"))[0]
      return demo_tracking.tracking_iou(model, clips, boxes, pcfg.synthesis, seed=seed)

    track = stages.run("object_tracking", os.path.join(d, "object_tracking.json"),
                       object_tracking)
  else:
    print("[demo] object_tracking: skipped (needs the demo data's object boxes; "
          f"{data_dir} has none)", flush=True)

  def random_export():
    path = os.path.join(d, "random_export")
    retrieval.random_encoder_export(path, arch=pcfg.model.arch,
                                    width_multiplier=pcfg.model.width_multiplier,
                                    clip_shape=clip_shape, seed=seed + 1000)
    return {"export": path}

  stages.run("random_encoder", os.path.join(d, "random_export.json"), random_export)
  ret_kw = dict(data_dir=data_dir, num_clips=num_clips, resize=test_resize)
  few = fcfg.few_label
  ret, probe, linear = {}, {}, {}
  for name, export_dir in (("ctp", ctp_export), ("random", os.path.join(d, "random_export"))):
    cache = os.path.join(d, f"feat_{name}.npz")
    ret[name] = stages.run(f"retrieval_{name}", os.path.join(d, f"retrieval_{name}.json"),
                           lambda e=export_dir, c=cache: _retrieval(e, cache=c, **ret_kw))
    probe[name] = knn_probe(cache)
    linear[name] = linear_probe(cache, seed, val_per_class=int(few.val_per_class),
                                few_fraction=float(few.fraction))

  split_dir = os.path.join(d, "splits")
  split_media = stages.run("splits", os.path.join(d, "splits_summary.json"),
                           lambda: {k: len(v) for k, v in demo_splits.write_split_dir(
                               data_dir, split_dir, seed, val_per_class=int(few.val_per_class),
                               few_fraction=float(few.fraction)).items()})

  runs = {}
  for arm in ARMS:
    cfg = few_label_config(fcfg) if arm.startswith("few_") else fcfg.copy_and_resolve_references()
    cfg.data.test_split = "val"      # the per-epoch curves: validation carved from train
    init = ctp_export if arm.endswith("ctp") else None
    wd = os.path.join(d, f"finetune_{arm}")
    stages.run(f"finetune_{arm}", os.path.join(d, f"finetune_{arm}.json"),
               lambda wd=wd, init=init, cfg=cfg: _jsonable(finetune.finetune(
                   cfg, data_dir=split_dir, workdir=wd, init_from=init)))
    runs[arm] = stages.run(
        f"evaluate_{arm}", os.path.join(d, f"evaluate_{arm}.json"),
        lambda wd=wd: _jsonable(evaluate.evaluate(wd, split_dir, num_clips=num_clips,
                                                  split="test")))

  row = {
      "seed": seed,
      "finetune_val_top1": {arm: _val_curve(os.path.join(d, f"finetune_{arm}", "history.json"))
                            for arm in ARMS},
      "retrieval_ctp": {k: ret["ctp"][k] for k in ("top1", "top5", "top10")},
      "retrieval_random": {k: ret["random"][k] for k in ("top1", "top5", "top10")},
      "probe_ctp": probe["ctp"],
      "probe_random": probe["random"],
      "linear_probe_ctp": linear["ctp"],
      "linear_probe_random": linear["random"],
      "pretext_iou": pre.get("iou"),
      "pretext_iou_static": pre.get("iou_static"),
      "pretext_curve": _pretrain_curve(os.path.join(d, "pretrain", "log.csv")),
      "tracking": track,
      "splits": split_media,
      "seconds": dict(stages.times),
      "dir": d,
  }
  for arm in ARMS:
    row[f"finetune_{arm}"] = {k: runs[arm][k] for k in ("top1", "top5")}
  return row


def _pretrain_curve(log_csv):
  """[{epoch, loss, iou, iou_static[, val_iou, val_iou_static]}] per pretraining epoch, from its
  log.csv: the training running means, and the held-out evaluation where one ran."""
  if not os.path.exists(log_csv):
    return []
  out = []
  with open(log_csv) as f:
    for r in csv.DictReader(f):
      if r.get("epoch") in (None, "epoch"):
        continue
      e = {"epoch": int(float(r["epoch"])), "loss": float(r["loss"]), "iou": float(r["iou"]),
           "iou_static": float(r["iou_static"])}
      for k in ("val_iou", "val_iou_static"):
        if r.get(k) not in (None, "") and float(r[k]) == float(r[k]):   # NaN: not evaluated
          e[k] = float(r[k])
      out.append(e)
  return out


def held_out_pretext(row, epoch):
  """(val_iou, val_iou_static) of the held-out evaluation after `epoch`, or (None, None)."""
  for e in reversed(row.get("pretext_curve") or []):   # a resumed epoch: its last row
    if e["epoch"] == epoch and "val_iou" in e:
      return e["val_iou"], e["val_iou_static"]
  return None, None


def mid_pretext(row):
  """Held-out (iou, iou_static) after the middle epoch of pretraining, or (None, None)."""
  curve = row.get("pretext_curve") or []
  return held_out_pretext(row, mid_epoch(curve[-1]["epoch"])) if curve else (None, None)


def _mid_training_mean(row):
  curve = row.get("pretext_curve") or []
  if not curve:
    return None, None
  mid = [e for e in curve if e["epoch"] == mid_epoch(curve[-1]["epoch"])]
  return (mid[-1]["iou"], mid[-1]["iou_static"]) if mid else (None, None)


def end_pretext(row):
  """Held-out (iou, iou_static) after the last epoch of pretraining, or (None, None)."""
  curve = row.get("pretext_curve") or []
  return held_out_pretext(row, curve[-1]["epoch"]) if curve else (None, None)


def comparisons(rows):
  """The paired comparisons of `results.json` (INTERFACES.md), from the per-seed rows."""
  from ctp_tf.demo import stats as demo_stats
  seeds = [r["seed"] for r in rows]
  out = []

  def add(name, metric, ctp_path, base_path):
    a = [_dig(r, ctp_path) for r in rows]
    b = [_dig(r, base_path) for r in rows]
    if any(v is None for v in a + b):
      return
    out.append(demo_stats.paired_comparison(name, metric, a, b, seeds=seeds))

  for when, fn in (("middle", mid_pretext), ("end", end_pretext)):
    pairs = [fn(r) for r in rows]
    if all(p[0] is not None for p in pairs):
      out.append(demo_stats.paired_comparison(
          f"pretext IoU on held-out videos vs static guess ({when} of pretraining)", "iou",
          [p[0] for p in pairs], [p[1] for p in pairs], seeds=seeds))
  add("zero-shot object tracking vs static guess", "iou", ("tracking", "object_iou"),
      ("tracking", "object_iou_static"))
  add("retrieval vs random encoder", "top1", ("retrieval_ctp", "top1"),
      ("retrieval_random", "top1"))
  add("retrieval vs random encoder", "top5", ("retrieval_ctp", "top5"),
      ("retrieval_random", "top5"))
  add(f"kNN probe (k={PROBE_K}, frozen encoder) vs random encoder", "top1",
      ("probe_ctp", "top1"), ("probe_random", "top1"))
  add("linear probe (frozen encoder) vs random encoder", "top1",
      ("linear_probe_ctp", "top1"), ("linear_probe_random", "top1"))
  add("few-label linear probe (frozen encoder) vs random encoder", "top1",
      ("linear_probe_ctp", "few_top1"), ("linear_probe_random", "few_top1"))
  add("finetune (all labels) vs scratch", "top1", ("finetune_ctp", "top1"),
      ("finetune_scratch", "top1"))
  add("few-label finetune vs scratch", "top1", ("finetune_few_ctp", "top1"),
      ("finetune_few_scratch", "top1"))
  return out


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
  plt = figures.pyplot()

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
  for i, wd in enumerate(workdirs):
    curve = _pretrain_curve(os.path.join(wd, "log.csv"))
    epochs = [e["epoch"] for e in curve]
    label = os.path.basename(os.path.dirname(wd))
    ax1.plot(epochs, [e["loss"] for e in curve], color=f"C{i}", label=label)
    ax2.plot(epochs, [e["iou"] for e in curve], color=f"C{i}", label=f"{label} predicted")
    ax2.plot(epochs, [e["iou_static"] for e in curve], color=f"C{i}", ls="--",
             label=f"{label} static guess")
    held = [e for e in curve if "val_iou" in e]
    if held:
      ax2.plot([e["epoch"] for e in held], [e["val_iou"] for e in held], "o", color=f"C{i}",
               label=f"{label} held-out")
      ax2.plot([e["epoch"] for e in held], [e["val_iou_static"] for e in held], "x",
               color=f"C{i}", label=f"{label} held-out static")
  ax1.set(xlabel="epoch", ylabel="loss", title="CtP pretraining loss")
  ax2.set(xlabel="epoch", ylabel="mean IoU, frames 1..T-1", title="Tracking IoU")
  ax1.legend(fontsize=7)
  ax2.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  return figures.save_figure(fig, out, dpi=110)


def plot_figure1(rows, out):
  """Validation top-1 per finetuning epoch, both arms, mean and min-max band over seeds; one
  panel for all labels and one for few labels (the paper's Figure 1, from each run's history)."""
  plt = figures.pyplot()

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
  for ax, (title, pair) in zip(axes, (("all labels", ("ctp", "scratch")),
                                      ("few labels", ("few_ctp", "few_scratch")))):
    for colour, arm in zip(("C0", "C1"), pair):
      curves = [r.get("finetune_val_top1", {}).get(arm) or {} for r in rows]
      epochs = sorted({int(e) for c in curves for e in c})
      epochs = [e for e in epochs if all(str(e) in c for c in curves)]
      if not epochs:
        continue
      vals = np.array([[c[str(e)] for e in epochs] for c in curves])
      label = ("CtP" if arm.endswith("ctp") else "scratch") + f" (mean of {len(rows)} seeds)"
      ax.plot(epochs, vals.mean(0), color=colour, marker="o", label=label)
      ax.fill_between(epochs, vals.min(0), vals.max(0), color=colour, alpha=0.2)
    ax.set(xlabel="finetuning epoch", title=f"Validation top-1, {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0].set_ylabel("val top-1 (band: min-max over seeds)")
  fig.tight_layout()
  return figures.save_figure(fig, out, dpi=110)


def plot_trajectory_examples(data_dir, config, out_png, out_gif, seed):
  from ctp_tf import plots
  return plots.render_pretrain_examples(data_dir, config, out_png, gif_path=out_gif,
                                        num_clips=3, seed=seed)["png"]


def gradcam_example(workdir, data_dir, config, out_png, out_gif):
  from ctp_tf.downstream import finetune, gradcam
  from ctp_tf.data import finetune_input

  model, cfg, _ = finetune.load_finetuned(workdir)
  ds = finetune_input.eval_dataset(
      data_dir, "test", num_clips=1, clip_len=int(cfg.data.clip_len),
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
  """Markdown table of the raw numbers: mean ± sample std over seeds (one seed: the value)."""
  g = lambda *path: [_dig(r, path) for r in rows]  # noqa: E731
  lines = [
      "| metric | CtP | baseline | seeds |",
      "| --- | --- | --- | --- |",
  ]
  n = len(rows)
  for k in ("top1", "top5", "top10"):
    lines.append(f"| retrieval {k} (baseline: random encoder) | "
                 f"{_stat(g('retrieval_ctp', k))} | {_stat(g('retrieval_random', k))} | {n} |")
  lines.append(f"| kNN probe top1, k={PROBE_K} (baseline: random encoder) | "
               f"{_stat(g('probe_ctp', 'top1'))} | {_stat(g('probe_random', 'top1'))} | {n} |")
  for k, what in (("top1", "all labels"), ("few_top1", "few labels")):
    lines.append(f"| linear probe top1, {what} (baseline: random encoder) | "
                 f"{_stat(g('linear_probe_ctp', k))} | {_stat(g('linear_probe_random', k))} "
                 f"| {n} |")
  for arm, what in (("", "all labels"), ("few_", "few labels")):
    for k in ("top1", "top5"):
      lines.append(f"| finetune {k}, {what} (baseline: scratch) | "
                   f"{_stat(g(f'finetune_{arm}ctp', k))} | "
                   f"{_stat(g(f'finetune_{arm}scratch', k))} | {n} |")
  for when, fn in (("middle", mid_pretext), ("end", end_pretext)):
    pairs = [fn(r) for r in rows]
    lines.append(f"| pretext IoU on held-out test videos, {when} of pretraining (baseline: "
                 f"static guess) | {_stat([p[0] for p in pairs])} | "
                 f"{_stat([p[1] for p in pairs])} | {n} |")
  mids = [_mid_training_mean(r) for r in rows]
  lines.append(f"| pretext IoU, training running mean of the middle epoch (baseline: static "
               f"guess) | {_stat([m[0] for m in mids])} | {_stat([m[1] for m in mids])} | {n} |")
  lines.append(f"| pretext IoU, training running mean of the last epoch (baseline: static "
               f"guess) | {_stat(g('pretext_iou'))} | {_stat(g('pretext_iou_static'))} | {n} |")
  if any(r.get("tracking") for r in rows):
    lines.append(f"| zero-shot IoU on patches pasted into the test clips (baseline: static "
                 f"guess) | {_stat(g('tracking', 'pasted_iou'))} | "
                 f"{_stat(g('tracking', 'pasted_iou_static'))} | {n} |")
    lines.append(f"| zero-shot IoU on the test videos' own object (baseline: static guess) | "
                 f"{_stat(g('tracking', 'object_iou'))} | "
                 f"{_stat(g('tracking', 'object_iou_static'))} | {n} |")
  return "\n".join(lines)


def curves_table(rows):
  """Validation top-1 per finetuning epoch (mean ± std over seeds), all four arms."""
  g = lambda *path: [_dig(r, path) for r in rows]  # noqa: E731
  epochs = sorted({int(e) for r in rows for arm in (r.get("finetune_val_top1") or {}).values()
                   for e in arm})
  lines = ["| finetune epoch | CtP, all labels | scratch, all labels | CtP, few labels "
           "| scratch, few labels |", "| --- | --- | --- | --- | --- |"]
  for e in epochs:
    lines.append(f"| {e} | " + " | ".join(_stat(g("finetune_val_top1", arm, str(e)))
                                          for arm in ("ctp", "scratch", "few_ctp",
                                                      "few_scratch")) + " |")
  return "\n".join(lines)


def times_table(rows):
  g = lambda *path: [_dig(r, path) for r in rows]  # noqa: E731
  stages = [s for s in STAGES if any(s in r["seconds"] for r in rows)]
  lines = ["| stage | wall time (s) |", "| --- | --- |"]
  for s in stages:
    lines.append(f"| {s} | {_stat(g('seconds', s), digits=0)} |")
  return "\n".join(lines)


def _dig(d, path):
  for p in path:
    if not isinstance(d, dict) or p not in d:
      return None
    d = d[p]
  return d


def verdict(comps):
  """Plain-language reading of the comparisons: only their verdicts."""
  by = {v: [f"{c['name']} ({c['metric']})" for c in comps if c["verdict"] == v]
        for v in ("ctp better", "baseline better", "undecided")}
  parts = []
  for v, text in (("ctp better", "CtP better (95% interval above zero)"),
                  ("baseline better", "baseline better (interval below zero)"),
                  ("undecided", "undecided (interval contains zero)")):
    if by[v]:
      parts.append(f"{text}: " + "; ".join(by[v]) + ".")
  return " ".join(parts)


def write_report(out_dir, results, figures=None):
  """Writes `report.md` from `results` (the `results.json` dict): the comparisons table first,
  then Figure 1 (val top-1 per epoch, both arms, mean and band), then the details."""
  from ctp_tf.demo import stats as demo_stats
  rows = results["seeds"]
  comps = results["comparisons"]
  figures = figures if figures is not None else results.get("figures", {})
  seeds = ", ".join(str(r["seed"]) for r in rows)
  lines = [f"# CtP against its baselines on {results.get('data', 'the demo data')}", ""]
  lines.append(demo_stats.comparisons_table(comps))
  lines += ["", f"Each row pairs CtP with its baseline seed by seed (seeds {seeds}): CtP - "
            "baseline is the mean of the per-seed differences with its 95% Student-t "
            "interval (n - 1 degrees of freedom); the verdict is \"ctp better\" when the "
            "interval lies above zero, \"baseline better\" when below, otherwise "
            "\"undecided\". Every number comes from this run (`results.json`); nothing is fixed "
            "in code. The pretext rows score the model as it stood after the middle and the "
            "last epoch of pretraining on clips of the held-out test videos (the same clips "
            "for every seed), beside the static guess (frame 0's box kept) on those clips.",
            "", verdict(comps), ""]
  fig1 = figures.get("figure1")
  lines += ["## Figure 1: finetuning, CtP vs scratch", ""]
  if fig1:
    lines += [f"![Figure 1]({os.path.relpath(fig1, out_dir)})", ""]
  lines += ["Validation split: videos carved from the training split per seed (never the test "
            "split); mean ± sample std over seeds.", "", curves_table(rows), ""]
  if results.get("notes"):
    lines += ["## Notes", ""] + [f"- {n}" for n in results["notes"]] + [""]
  lines += ["## All numbers (mean ± sample std over seeds)", "", summary_table(rows), "",
            "## Wall time per stage", "", times_table(rows), ""]
  lines += ["## Figures", ""]
  for title, path in figures.items():
    if path and title != "figure1":
      lines += [f"### {title}", f"![{title}]({os.path.relpath(path, out_dir)})", ""]
  lines += ["## Per seed", "", "```json", json.dumps(_jsonable(rows), indent=1, sort_keys=True),
            "```", ""]
  path = os.path.join(out_dir, "report.md")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(tmp, path)
  return path


def report_from_results(out_dir):
  """Rebuilds `report.md` from `out_dir/results.json` (the table shows what the file holds)."""
  with open(os.path.join(out_dir, "results.json")) as f:
    return write_report(out_dir, json.load(f))


def set_threads(intra_op=None):
  """Sets TensorFlow's intra-op thread count (None: `$CTP_TF_INTRA_OP_THREADS`, else TF's
  default). Must run before TensorFlow executes anything; returns the count set or None."""
  intra_op = intra_op or int(os.environ.get("CTP_TF_INTRA_OP_THREADS", "0") or 0) or None
  if intra_op:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
  return intra_op


def run_demo(out_dir="runs/demo", *, seeds=(0,), tiny=False, data_dir=None,
             pretrain_path=None, finetune_path=None, intra_op_threads=None):
  """Runs every stage for each seed; writes `out_dir/results.json` and `report.md`.

  Args:
    data_dir: converted shards with train and test splits (any `make_tfrecords.py` output);
      None: the demo data, made and cached on first use.
    pretrain_path, finetune_path: config files (default `configs/demo.py` and
      `configs/finetune_demo.py`).
    intra_op_threads: TensorFlow intra-op threads (None: `$CTP_TF_INTRA_OP_THREADS` or TF's
      default).
  Returns: the results dict (`seeds`: per-seed rows, `comparisons`).
  """
  from ctp_tf.demo import assets as demo_assets
  from ctp_tf.downstream import export  # noqa: F401  (fail early if the package is broken)
  from ctp_tf import curves

  threads = set_threads(intra_op_threads)
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  t0 = time.time()
  notes = []
  if data_dir is None:
    print("[demo] demo data (made and converted on first use) ...", flush=True)
    if tiny:
      data_dir = demo_assets.ensure_demo_data(os.path.join(out_dir, "data"),
                                              **TINY_DATA)
    else:
      data_dir = demo_assets.ensure_demo_data()
    print(f"[demo] demo data: {data_dir} ({time.time() - t0:.0f} s)", flush=True)
    data_name = "the demo data"
  else:
    from ctp_tf.data import shards
    try:
      meta = shards.load_dataset_json(data_dir)
    except (FileNotFoundError, ValueError) as e:
      raise DemoInputError(str(e)) from None
    missing = {"train", "test"} - set(meta.get("splits", {}))
    if missing:
      raise DemoInputError(f"{data_dir} has no {sorted(missing)} split(s); the demo needs train "
                       "and test (scripts/make_tfrecords.py output)")
    data_name = f"`{data_dir}`"
  from ctp_tf.demo import tracking as demo_tracking
  if demo_tracking.meta_path_for(data_dir) is None:
    notes.append("Zero-shot object tracking skipped: it needs per-frame object boxes, which "
                 "only the demo data records (demo_meta.json).")

  rows = [run_seed(s, out_dir, data_dir, tiny=tiny, pretrain_path=pretrain_path,
                   finetune_path=finetune_path) for s in seeds]

  figdir = os.path.join(out_dir, "figures")
  os.makedirs(figdir, exist_ok=True)
  first = rows[0]["dir"]
  figures = {}
  figures["figure1"] = _try(plot_figure1, rows, os.path.join(figdir, "figure1.png"))
  figures["Synthesised trajectories (solid: visible, dashed: hidden)"] = _try(
      plot_trajectory_examples, data_dir, pretrain_config(tiny, seeds[0], pretrain_path),
      os.path.join(figdir, "trajectories.png"), os.path.join(figdir, "trajectories.gif"),
      seeds[0])
  figures["Pretraining loss and tracking IoU"] = _try(
      plot_pretrain_curves, [os.path.join(r["dir"], "pretrain") for r in rows],
      os.path.join(figdir, "pretrain_curves.png"))
  figures[f"Finetuning, seed {seeds[0]}: scratch vs CtP, all and few labels"] = _try(
      curves.plot_curves, [os.path.join(first, f"finetune_{a}") for a in ARMS],
      ["scratch", "CtP", "scratch, few labels", "CtP, few labels"],
      os.path.join(figdir, "finetune_curves.png"))
  figures["Guided Grad-CAM, CtP-finetuned classifier"] = _try(
      gradcam_example, os.path.join(first, "finetune_ctp"), data_dir, None,
      os.path.join(figdir, "gradcam.png"), os.path.join(figdir, "gradcam.gif"))

  results = {"comparisons": comparisons(rows), "seeds": _jsonable(rows), "data": data_name,
             "data_dir": os.path.abspath(data_dir), "tiny": bool(tiny),
             "interval": "paired 95% Student-t interval of the per-seed differences",
             "intra_op_threads": threads,
             "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
             "figures": {k: v for k, v in figures.items() if v}, "notes": notes,
             "total_seconds": round(time.time() - t0, 1)}
  _write_json(os.path.join(out_dir, "results.json"), results)
  report = write_report(out_dir, results)
  from ctp_tf.demo import stats as demo_stats
  print()
  print(demo_stats.comparisons_table(results["comparisons"]))
  print()
  print(verdict(results["comparisons"]))
  print(f"\n[demo] report: {report} (total {time.time() - t0:.0f} s)")
  return results


def _try(fn, *args):
  """Figures are extras: one that fails is reported and left out, the numbers still stand."""
  try:
    return fn(*args)
  except Exception as e:  # pylint: disable=broad-except
    print(f"[demo] figure {fn.__name__} failed: {type(e).__name__}: {e}", flush=True)
    return None
