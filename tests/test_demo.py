"""scripts/demo.py --tiny: every stage at toy size; results.json's comparisons and the report's
first table come from the runs; the same protocol on a second dataset made by the converter."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ctp_tf.demo import run as demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
FIELDS = {"name", "metric", "ctp", "baseline", "diff_mean", "diff_ci95", "wins", "seeds",
          "verdict"}


def _demo(*args, timeout=1800):
  return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), *args],
                        capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("demo"))
  proc = _demo("--tiny", "--seeds=0,1", f"--out_dir={out}")
  assert proc.returncode == 0, proc.stderr[-4000:]
  return out, proc.stdout


def _load(path):
  with open(path) as f:
    return json.load(f)


def test_comparisons_have_every_field_and_come_from_the_stages(tiny_demo):
  out, stdout = tiny_demo
  res = _load(os.path.join(out, "results.json"))
  comps = {(c["name"], c["metric"]): c for c in res["comparisons"]}
  names = " | ".join(c["name"] for c in res["comparisons"])
  for word in ("pretext", "retrieval", "probe", "few-label finetune", "finetune",
               "object tracking"):
    assert word in names, word
  for c in res["comparisons"]:
    assert set(c) == FIELDS, c["name"]
    assert c["seeds"] == [0, 1] and len(c["ctp"]) == len(c["baseline"]) == 2
    assert c["verdict"] in ("ctp better", "baseline better", "undecided")
    d = np.subtract(c["ctp"], c["baseline"])
    assert c["diff_mean"] == pytest.approx(d.mean(), abs=1e-6)
    assert c["wins"] == int(np.sum(d > 0))
    lo, hi = c["diff_ci95"]
    assert lo <= c["diff_mean"] <= hi
  # Each arm's numbers are what its stage wrote, seed by seed.
  for i, seed in enumerate((0, 1)):
    d = os.path.join(out, f"seed{seed}")
    ft = comps[("finetune (all labels) vs scratch", "top1")]
    assert ft["ctp"][i] == _load(os.path.join(d, "evaluate_ctp.json"))["top1"]
    assert ft["baseline"][i] == _load(os.path.join(d, "evaluate_scratch.json"))["top1"]
    few = comps[("few-label finetune vs scratch", "top1")]
    assert few["ctp"][i] == _load(os.path.join(d, "evaluate_few_ctp.json"))["top1"]
    assert few["baseline"][i] == _load(os.path.join(d, "evaluate_few_scratch.json"))["top1"]
    ret = comps[("retrieval vs random encoder", "top5")]
    assert ret["ctp"][i] == _load(os.path.join(d, "retrieval_ctp.json"))["top5"]
    assert ret["baseline"][i] == _load(os.path.join(d, "retrieval_random.json"))["top5"]
    # The pretext rows: the held-out evaluation after the middle (ceil(E/2)) and last epoch,
    # as pretraining's log.csv has them.
    with open(os.path.join(d, "pretrain", "log.csv")) as f:
      log = {int(r["epoch"]): r for r in csv.DictReader(f)}
    epochs = max(log)
    for when, epoch in (("middle", (epochs + 1) // 2), ("end", epochs)):
      pt = comps[(f"pretext IoU on held-out videos vs static guess ({when} of pretraining)",
                  "iou")]
      assert (pt["ctp"][i], pt["baseline"][i]) == (float(log[epoch]["val_iou"]),
                                                   float(log[epoch]["val_iou_static"]))
    pre = _load(os.path.join(d, "pretrain_result.json"))
    assert pt["ctp"][i] == pre["val_iou"]
    # The linear probes: refitted here from the seed's cached features.
    lin = comps[("few-label linear probe (frozen encoder) vs random encoder", "top1")]
    for name, got in (("ctp", lin["ctp"][i]), ("random", lin["baseline"][i])):
      want = demo.linear_probe(os.path.join(d, f"feat_{name}.npz"), seed, val_per_class=1,
                               few_fraction=0.34)
      assert got == want["few_top1"]
    assert ("linear probe (frozen encoder) vs random encoder", "top1") in comps
    track = _load(os.path.join(d, "object_tracking.json"))
    tr = comps[("zero-shot object tracking vs static guess", "iou")]
    assert (tr["ctp"][i], tr["baseline"][i]) == (track["object_iou"], track["object_iou_static"])
    assert track["num_clips"] > 0
    # The few-label arm trained on the stratified subset, evaluated on the whole test split.
    ev = _load(os.path.join(d, "evaluate_few_ctp.json"))
    assert ev["split"] == "test" and ev["num_videos"] == _load(
        os.path.join(d, "splits", "dataset.json"))["splits"]["test"]["videos"]
  assert "| comparison | metric |" in stdout     # the table is printed at the end


def test_report_first_table_is_built_from_results_json(tiny_demo):
  from ctp_tf.demo import run
  out, _ = tiny_demo
  report = open(os.path.join(out, "report.md")).read()
  first_table = report[report.index("|"):].split("\n\n")[0]
  assert first_table.startswith("| comparison | metric | CtP (mean) |")
  res = _load(os.path.join(out, "results.json"))
  assert first_table.count("\n") == len(res["comparisons"]) + 1
  # Change a stored number: the rebuilt report shows it.
  res["comparisons"][0]["diff_mean"] = 0.4321
  res["comparisons"][0]["diff_ci95"] = [0.1234, 0.7654]
  res["comparisons"][0]["verdict"] = "ctp better"
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(res, f)
  run.report_from_results(out)
  report = open(os.path.join(out, "report.md")).read()
  first_table = report[report.index("|"):].split("\n\n")[0]
  assert "+0.432 [+0.123, +0.765]" in first_table.split("\n")[2]
  # Figure 1 follows the table, then the per-epoch curves from each run's history.
  assert report.index("(figures/figure1.png)") > report.index("| comparison |")
  assert os.path.getsize(os.path.join(out, "figures", "figure1.png")) > 1000
  row = res["seeds"][0]
  hist = _load(os.path.join(out, "seed0", "finetune_few_ctp", "history.json"))["epochs"]
  expect = {str(e["epoch"]): e["val_top1"] for e in hist if e.get("val_top1") is not None}
  assert expect and row["finetune_val_top1"]["few_ctp"] == expect


def test_validation_split_never_overlaps_test(tiny_demo):
  out, _ = tiny_demo
  for seed in (0, 1):
    media = _load(os.path.join(out, f"seed{seed}", "splits", "splits.json"))
    assert media["val"] and media["test"] and media["train_few"]
    assert not set(media["val"]) & set(media["test"])
    assert not set(media["val"]) & set(media["train"])
    assert not set(media["train"]) & set(media["test"])
    assert set(media["train_few"]) <= set(media["train"])
    # The finetuning runs validated on `val` and were tested on `test`.
    cfg = _load(os.path.join(out, f"seed{seed}", "finetune_ctp", "config.json"))["config"]
    assert cfg["data"]["test_split"] == "val" and cfg["data"]["train_split"] == "train"
  a = _load(os.path.join(out, "seed0", "splits", "splits.json"))
  b = _load(os.path.join(out, "seed1", "splits", "splits.json"))
  assert a["test"] == b["test"] and a["val"] != b["val"]


def test_rerun_skips_finished_stages(tiny_demo):
  out, _ = tiny_demo
  before = _load(os.path.join(out, "results.json"))
  proc = _demo("--tiny", "--seeds=0,1", f"--out_dir={out}", timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  from ctp_tf.demo import run
  assert proc.stdout.count("skipped") == 2 * len(run.STAGES)
  after = _load(os.path.join(out, "results.json"))
  assert [r["finetune_ctp"] for r in after["seeds"]] == [r["finetune_ctp"]
                                                         for r in before["seeds"]]


def _second_dataset(root):
  """Three classes of tiny videos (a square moving right, moving down, still), UCF-101 layout,
  converted with scripts/make_tfrecords.py."""
  from ctp_tf.demo import data as demo_data
  rng = np.random.default_rng(5)
  classes = ("Right", "Down", "Still")
  train, test = [], []
  for c, cls in enumerate(classes):
    os.makedirs(os.path.join(root, "videos", cls), exist_ok=True)
    for i in range(5):
      frames = np.empty((14, 40, 48, 3), np.uint8)
      base = rng.uniform(40, 200, size=(40, 48, 3))
      x, y = rng.integers(4, 16, size=2)
      for t in range(14):
        f = base.copy()
        dx, dy = (t, 0) if cls == "Right" else (0, t) if cls == "Down" else (0, 0)
        f[y + dy:y + dy + 8, x + dx:x + dx + 8] = 250
        frames[t] = f
      name = f"{cls}/v_{cls}_g{i + 1:02d}_c01.avi"
      demo_data.write_video(os.path.join(root, "videos", name), frames)
      (test if i < 2 else train).append((name, c + 1))
  with open(os.path.join(root, "classInd.txt"), "w") as f:
    f.write("".join(f"{c + 1} {cls}\n" for c, cls in enumerate(classes)))
  with open(os.path.join(root, "trainlist01.txt"), "w") as f:
    f.write("".join(f"{n} {c}\n" for n, c in train))
  with open(os.path.join(root, "testlist01.txt"), "w") as f:
    f.write("".join(f"{n}\n" for n, _ in test))
  shards = os.path.join(root, "shards")
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "make_tfrecords.py"), "--dataset=ucf101",
       f"--video_dir={root}/videos", f"--split_dir={root}", f"--out_dir={shards}",
       "--resize_short=0", "--workers=1"], env=ENV, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return shards


def test_same_protocol_on_a_converted_dataset(tmp_path):
  shards = _second_dataset(str(tmp_path / "mine"))
  out = str(tmp_path / "out")
  proc = _demo("--tiny", "--seeds=3", f"--data_dir={shards}", f"--out_dir={out}")
  assert proc.returncode == 0, proc.stderr[-4000:]
  res = _load(os.path.join(out, "results.json"))
  assert res["data_dir"] == os.path.abspath(shards)
  names = " | ".join(c["name"] for c in res["comparisons"])
  for word in ("pretext", "retrieval", "probe", "few-label finetune"):
    assert word in names, word
  assert "object tracking" not in names            # no object boxes in user data
  assert any("tracking skipped" in n for n in res["notes"])
  for c in res["comparisons"]:
    assert set(c) == FIELDS and c["seeds"] == [3] and c["verdict"] == "undecided"
  ev = _load(os.path.join(out, "seed3", "evaluate_ctp.json"))
  assert ev["num_videos"] == 6 and len(ev["class_names"]) == 3
  report = open(os.path.join(out, "report.md")).read()
  assert report.index("| comparison |") < report.index("## Figure 1")


def test_user_mistakes_are_one_line_exit_2(tmp_path):
  for args in (["--data_dir=" + str(tmp_path / "nope")], ["--seeds=a"],
               ["--pretrain_config=" + str(tmp_path / "missing.py")],
               ["--intra_op_threads=0"]):
    proc = _demo(*args, f"--out_dir={tmp_path / 'o'}", timeout=120)
    assert proc.returncode == 2, (args, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), (args, proc.stderr[-2000:])
