"""scripts/demo.py --tiny: every stage at toy size; the report's numbers come from the runs."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("demo"))
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--tiny",
                         f"--out_dir={out}"], capture_output=True, text=True, env=env,
                        timeout=900)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return out, proc.stdout


def _load(path):
  with open(path) as f:
    return json.load(f)


def test_report_and_figures_written(tiny_demo):
  out, stdout = tiny_demo
  report = open(os.path.join(out, "report.md")).read()
  assert "| retrieval top1" in report and "| finetune top1" in report
  for name in ("trajectories.png", "trajectories.gif", "pretrain_curves.png",
               "finetune_curves.png", "gradcam.png"):
    path = os.path.join(out, "figures", name)
    assert os.path.getsize(path) > 1000, name
    if name.endswith(".png"):
      assert f"(figures/{name})" in report, name
  assert "| metric | CtP | baseline |" in stdout      # the table is printed at the end


def test_table_numbers_come_from_the_runs(tiny_demo):
  out, _ = tiny_demo
  seed_dir = os.path.join(out, "seed0")
  row = _load(os.path.join(out, "results.json"))[0]
  # Each number in the results is the one the stage wrote, not a constant.
  for key, stage in (("retrieval_ctp", "retrieval_ctp"), ("retrieval_random", "retrieval_random"),
                     ("finetune_scratch", "evaluate_scratch"), ("finetune_ctp", "evaluate_ctp")):
    stage_result = _load(os.path.join(seed_dir, f"{stage}.json"))
    for k, v in row[key].items():
      assert v == stage_result[k], (key, k)
  # The evaluation numbers are what the finetuned model's own eval wrote, a fraction of videos.
  ev = _load(os.path.join(seed_dir, "evaluate_ctp.json"))
  n = ev["num_videos"]
  assert n > 0 and abs(ev["top1"] * n - round(ev["top1"] * n)) < 1e-6
  pre = _load(os.path.join(seed_dir, "pretrain_result.json"))
  assert row["pretext_iou"] == pre["iou"] and 0 <= pre["iou"] <= 1
  report = open(os.path.join(out, "report.md")).read()
  assert f"| {row['finetune_ctp']['top1']:.3f} | {row['finetune_scratch']['top1']:.3f} |" \
      in report
  assert f"| {row['retrieval_ctp']['top5']:.3f} | {row['retrieval_random']['top5']:.3f} |" \
      in report
  # Zero-shot tracking: the stage's own numbers, IoUs, on clips where the object was found.
  track = _load(os.path.join(seed_dir, "object_tracking.json"))
  assert row["tracking"] == track and track["num_clips"] > 0
  for k in ("object_iou", "object_iou_static", "pasted_iou", "pasted_iou_static"):
    assert 0 <= track[k] <= 1, k
  assert (f"| {track['object_iou']:.3f} | {track['object_iou_static']:.3f} |") in report
  # The per-epoch validation curve is each finetuning run's own history.
  for arm in ("ctp", "scratch"):
    hist = _load(os.path.join(seed_dir, f"finetune_{arm}", "history.json"))["epochs"]
    expect = {str(e["epoch"]): e["val_top1"] for e in hist
              if e.get("val_top1") is not None and e["val_top1"] == e["val_top1"]}
    assert expect and row["finetune_val_top1"][arm] == expect, arm
  curve = row["finetune_val_top1"]
  last = max(curve["ctp"], key=int)
  assert (f"| {last} | {curve['ctp'][last]:.3f} | {curve['scratch'][last]:.3f} |") in report


def test_rerun_skips_finished_stages(tiny_demo):
  out, _ = tiny_demo
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
  before = _load(os.path.join(out, "results.json"))
  # Figures are remade; every stage is skipped, so the numbers stay those of the first run.
  proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--tiny",
                         f"--out_dir={out}"], capture_output=True, text=True, env=env,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.count("skipped") == 9
  after = _load(os.path.join(out, "results.json"))
  assert [r["finetune_ctp"] for r in after] == [r["finetune_ctp"] for r in before]


def test_verdict_counts_wins_and_names_an_unlearned_pretext():
  from ctp_tf import demo
  row = {"pretext_iou": 0.455, "pretext_iou_static": 0.450, "finetune_ctp": {"top1": 0.3},
         "finetune_scratch": {"top1": 0.2}, "retrieval_ctp": {"top1": 0.1},
         "retrieval_random": {"top1": 0.2}}
  text = demo.verdict([row, dict(row, pretext_iou=0.50)])
  assert "beat scratch on top-1 in 2 of 2" in text
  assert "random encoder on top-1 in 0 of 2" in text
  assert "by more than 0.01 in 1 of 2" in text and "did not learn" not in text
  text = demo.verdict([row])   # 0.005 above the static guess is not learning to track
  assert "in 0 of 1" in text and "did not learn to track" in text


def test_verdict_says_when_tracking_does_not_carry_over():
  from ctp_tf import demo
  row = {"pretext_iou": 0.55, "pretext_iou_static": 0.45,
         "tracking": {"object_iou": 0.35, "object_iou_static": 0.35}}
  text = demo.verdict([row, dict(row)])
  assert "own object better than the static guess (by more than 0.01) in 0 of 2" in text
  assert "did not carry over" in text
  moved = dict(row, tracking={"object_iou": 0.45, "object_iou_static": 0.35})
  text = demo.verdict([row, moved])
  assert "in 1 of 2" in text and "did not carry over" not in text


def test_bright_boxes_find_the_white_object_per_frame():
  import numpy as np
  from ctp_tf import demo_tracking
  clips = np.full((2, 3, 10, 12, 3), 60, np.uint8)
  clips[..., 0] = 160            # the demo background's brightest channel stays <= 160
  for t in range(3):
    clips[0, t, 2:5, 3 + t:7 + t] = 255
  clips[1, 0, 4:6, 4:6] = 255    # video 1 loses its object after frame 0
  boxes, found = demo_tracking.bright_boxes(clips)
  assert found.tolist() == [True, False]
  assert boxes[0].tolist() == [[3, 2, 7, 5], [4, 2, 8, 5], [5, 2, 9, 5]]
