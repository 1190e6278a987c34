"""Demo data: real decodable files, UCF-101 layout, class decided by the main object's motion."""

import collections
import json
import os
import re
import subprocess
import sys

import av
import numpy as np
import pytest

from ctp_tf.data import converters
from ctp_tf.demo import data as demo_data

TINY = dict(train_per_class=2, test_per_class=1, width=48, height=32, min_frames=8,
            max_frames=12)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("demo"))
  summary = demo_data.make_demo_data(out, seed=3, progress=False, **TINY)
  return out, summary


def _meta(out):
  with open(os.path.join(out, demo_data.META_FILE)) as f:
    return json.load(f)


def _decode(path):
  with av.open(path) as c:
    return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_layout_and_split_files(tiny_demo):
  out, summary = tiny_demo
  n = len(demo_data.CLASSES)
  assert summary["videos"] == summary["written"] == n * 3
  listing = converters.list_videos("ucf101", os.path.join(out, "videos"), split_dir=out)
  assert listing.classes == list(demo_data.CLASSES) and not listing.missing
  assert len(listing.splits["train"]) == 2 * n and len(listing.splits["test"]) == n
  train_groups = {e.media_id.split("_g")[1][:2] for e in listing.splits["train"]}
  test_groups = {e.media_id.split("_g")[1][:2] for e in listing.splits["test"]}
  assert not train_groups & test_groups  # a group never straddles the splits, as in UCF-101
  for e in listing.splits["train"] + listing.splits["test"]:
    assert e.media_id.split("/")[0] == e.label_string == demo_data.CLASSES[e.label]


def test_files_decode_and_show_the_stored_motion(tiny_demo):
  out, _ = tiny_demo
  meta = _meta(out)
  formats = collections.Counter()
  for i, v in enumerate(meta["videos"]):
    path = os.path.join(out, v["path"])
    frames = _decode(path)
    formats[os.path.splitext(path)[1]] += 1
    assert frames.shape == (v["frames"], TINY["height"], TINY["width"], 3)
    with av.open(path) as c:
      codec = c.streams.video[0].codec_context.name
    assert codec == ("h264" if path.endswith(".mp4") else "mjpeg")
    # The class follows from the stored trajectory alone...
    assert demo_data.classify_trajectory(v["centres"], v["scale"]) == v["class"]
    # ...and the file shows that trajectory: it matches a fresh render of the same spec.
    if i % 3 == 0:
      label = demo_data.CLASSES.index(v["class"])
      index = _index_from_name(v["path"])
      spec = demo_data.video_spec(3, label, index, mp4_fraction=0.5, **{
          k: TINY[k] for k in ("width", "height", "min_frames", "max_frames")})
      np.testing.assert_allclose(spec["main"]["centres"], v["centres"], atol=0.01)
      forward = demo_data.render_video(spec).astype(np.float32)
      backward = forward[::-1]  # same look, opposite motion (the paired class)
      moving = np.abs(forward - backward).max(-1) > 40  # where the two motions disagree
      decoded = frames.astype(np.float32)
      err_fwd = np.abs(decoded - forward).max(-1)[moving].mean()
      err_bwd = np.abs(decoded - backward).max(-1)[moving].mean()
      assert err_fwd < 0.5 * err_bwd, (v["path"], err_fwd, err_bwd)
  assert formats[".mp4"] > 0 and formats[".avi"] > 0


def _index_from_name(path):
  stem = os.path.splitext(os.path.basename(path))[0]
  g, c = stem.split("_g")[1].split("_c")
  return (int(g) - 1) * demo_data.CLIPS_PER_GROUP + int(c) - 1


def test_every_class_is_decided_by_motion_at_default_size():
  """Many default-size specs (no rendering): the trajectory gives the class, always."""
  sizes = {k: v for k, v in demo_data.default_sizes().items() if k in (
      "width", "height", "min_frames", "max_frames", "mp4_fraction")}
  means = {}
  for label, cls in enumerate(demo_data.CLASSES):
    halves = []
    for i in range(25):
      spec = demo_data.video_spec(0, label, i, **sizes)
      assert demo_data.classify_trajectory(spec["main"]["centres"], spec["main"]["scale"]) == cls
      halves.append(spec["main"]["half"][0])
    means[cls] = np.mean(halves)
  # The main object's mean size comes from one range for every class.
  assert max(means.values()) / min(means.values()) < 1.35


def test_rerun_is_noop_and_seed_determinism(tiny_demo, tmp_path):
  out, _ = tiny_demo
  before = {p: os.stat(os.path.join(dp, p)).st_mtime_ns
            for dp, _, fs in os.walk(out) for p in fs}
  again = demo_data.make_demo_data(out, seed=3, progress=False, **TINY)
  assert again["written"] == 0
  after = {p: os.stat(os.path.join(dp, p)).st_mtime_ns for dp, _, fs in os.walk(out) for p in fs}
  assert before == after
  # The same seed gives the same bytes; another seed gives other videos.
  small = dict(TINY, train_per_class=1, test_per_class=0)
  a = demo_data.make_demo_data(str(tmp_path / "a"), seed=3, progress=False, **small)
  b = demo_data.make_demo_data(str(tmp_path / "b"), seed=4, progress=False, **small)
  assert a["videos"] == b["videos"] == len(demo_data.CLASSES)
  meta_a, meta_b = _meta(str(tmp_path / "a")), _meta(str(tmp_path / "b"))
  ref = {v["path"]: v for v in _meta(out)["videos"]}
  for v in meta_a["videos"]:
    with open(os.path.join(tmp_path, "a", v["path"]), "rb") as f:
      assert f.read() == open(os.path.join(out, v["path"]), "rb").read()
    assert v["centres"] == ref[v["path"]]["centres"]
  assert [v["centres"] for v in meta_a["videos"]] != [v["centres"] for v in meta_b["videos"]]


def test_bad_sizes_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="even"):
    demo_data.make_demo_data(str(tmp_path), width=47, progress=False)
  with pytest.raises(TypeError, match="unknown demo data options"):
    demo_data.make_demo_data(str(tmp_path), frames=3, progress=False)


def test_scripts_make_and_convert_demo(tmp_path):
  """The two public command lines end to end on a tiny demo set."""
  env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
  demo = str(tmp_path / "demo")
  shards = str(tmp_path / "shards")
  flags = [f"--{k}={v}" for k, v in TINY.items()]
  subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_demo_data.py"),
                  f"--out_dir={demo}", "--seed=1", *flags], check=True, env=env,
                 capture_output=True)
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "scripts", "make_tfrecords.py"), "--dataset=ucf101",
       f"--video_dir={demo}/videos", f"--split_dir={demo}", f"--out_dir={shards}",
       "--resize_short=0", "--workers=1"], env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  n = len(demo_data.CLASSES)
  assert summary["videos"] == 3 * n and summary["failures"] == 0
  with open(os.path.join(shards, "dataset.json")) as f:
    meta = json.load(f)
  assert meta["classes"] == list(demo_data.CLASSES)
  assert meta["splits"]["train"]["videos"] == 2 * n and meta["splits"]["test"]["videos"] == n
  assert meta["splits"]["train"]["frames"] == sum(
      v["frames"] for v in _meta(demo)["videos"] if v["split"] == "train")


def test_make_demo_data_script_defaults_are_the_library_sizes():
  """scripts/make_demo_data.py with no size flags makes what the demo makes (96 x 72, ...)."""
  proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_demo_data.py"),
                         "--helpshort"], capture_output=True, text=True, timeout=120)
  defaults = dict(re.findall(r"--(\w+): [^\n]*\n\s+\(default: '([^']*)'\)", proc.stdout))
  sizes = demo_data.default_sizes()
  assert (sizes["width"], sizes["height"]) == (96, 72)
  assert {k: defaults.get(k) for k in sizes} == {k: str(v) for k, v in sizes.items()}


def test_mirroring_changes_the_class_so_demo_finetuning_does_not_flip():
  """A left-right flip turns MoveRight into MoveLeft and clockwise into counter-clockwise: on
  this data flip augmentation would mislabel half the classes, so the demo config turns it off."""
  sizes = {k: v for k, v in demo_data.default_sizes().items() if k in (
      "width", "height", "min_frames", "max_frames", "mp4_fraction")}
  mirrored = {"MoveRight": "MoveLeft", "MoveLeft": "MoveRight", "MoveUp": "MoveUp",
              "MoveDown": "MoveDown", "Grow": "Grow", "Shrink": "Shrink",
              "CircleClockwise": "CircleCounterClockwise",
              "CircleCounterClockwise": "CircleClockwise"}
  for label, cls in enumerate(demo_data.CLASSES):
    for i in range(5):
      spec = demo_data.video_spec(1, label, i, **sizes)
      centres = np.array(spec["main"]["centres"], np.float64)
      centres[:, 0] = sizes["width"] - 1 - centres[:, 0]
      assert demo_data.classify_trajectory(centres, spec["main"]["scale"]) == mirrored[cls]
  from ctp_tf.training.config_utils import load_config_file
  assert load_config_file(os.path.join(REPO, "configs", "finetune_demo.py")).data.flip_prob == 0.0


def _texture_after_pipeline(module, tmp_path):
  """Mean |x(i) - x(i + 2)| along rows of one 8-frame clip per class, as the demo model sees it:
  encoded video -> `convert.decode_video` (the shards' JPEGs) -> `augment.decode_center` at
  short side 64 (the pipeline's bilinear rescale)."""
  import tensorflow as tf
  from ctp_tf.data import augment, convert
  sizes = {k: v for k, v in module.default_sizes().items() if k in (
      "width", "height", "min_frames", "max_frames", "mp4_fraction")}
  out = []
  for label in range(len(module.CLASSES)):
    spec = module.video_spec(0, label, 0, **sizes)
    path = str(tmp_path / f"{label}.{spec['format']}")
    module.write_video(path, module.render_video(spec)[:8], fmt=spec["format"])
    video = convert.decode_video(path, resize_short=0)
    resize = (round(64 * video.width / video.height), 64)
    clip = augment.decode_center(tf.constant(video.jpegs), tf.range(8), resize=resize,
                                 crop_size=64).numpy().astype(np.float32)
    out.append(float(np.abs(clip[:, :, 2:] - clip[:, :, :-2]).mean()))
  return out


def test_training_clips_keep_texture_where_patches_move(tmp_path):
  """CtP pastes patches cut from the clip itself; they show only where their texture moves.
  Through this path version 3 measured 37-56 grey levels (mean 47); version 2's mosaics measured
  21-29 (mean 26), and the demo pretraining never beat the static guess on them."""
  contrast = _texture_after_pipeline(demo_data, tmp_path)
  assert np.mean(contrast) > 35 and min(contrast) > 30, contrast


def test_stale_cache_is_remade(tmp_path):
  from ctp_tf.demo import assets as demo_assets
  small = dict(TINY, train_per_class=1, test_per_class=1)
  cache = str(tmp_path / "cache")
  demo_assets.ensure_demo_data(cache, progress=False, workers=1, **small)
  meta_path = os.path.join(cache, "raw", demo_data.META_FILE)
  meta = _meta(os.path.join(cache, "raw"))
  assert meta["version"] == demo_data.VERSION
  meta["version"] = demo_data.VERSION - 1
  with open(meta_path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match=f"version {demo_data.VERSION - 1}"):
    demo_data.make_demo_data(os.path.join(cache, "raw"), progress=False, **small)
  shards = demo_assets.ensure_demo_data(cache, progress=False, workers=1, **small)
  assert _meta(os.path.join(cache, "raw"))["version"] == demo_data.VERSION
  assert os.path.exists(os.path.join(shards, "dataset.json"))
  # Shards of an older converter (no `shard_order`: class-sorted) are converted again; the
  # videos are kept.
  ds_path = os.path.join(shards, "dataset.json")
  with open(ds_path) as f:
    ds = json.load(f)
  assert ds["shard_order"] == "permuted-v1"
  del ds["shard_order"]
  with open(ds_path, "w") as f:
    json.dump(ds, f)
  videos = {p: os.stat(os.path.join(dp, p)).st_mtime_ns
            for dp, _, fs in os.walk(os.path.join(cache, "raw", "videos")) for p in fs}
  demo_assets.ensure_demo_data(cache, progress=False, workers=1, **small)
  with open(ds_path) as f:
    assert json.load(f)["shard_order"] == "permuted-v1"
  assert videos == {p: os.stat(os.path.join(dp, p)).st_mtime_ns
                    for dp, _, fs in os.walk(os.path.join(cache, "raw", "videos")) for p in fs}


def test_meta_boxes_match_the_rendered_object():
  """The zero-shot tracking stage's boxes (`demo_tracking.object_boxes`, from demo_meta.json's
  centres, half sizes and scales) cover the object as `render_video` draws it."""
  from ctp_tf.demo import tracking as demo_tracking
  sizes = {k: v for k, v in demo_data.default_sizes().items() if k in (
      "width", "height", "min_frames", "max_frames", "mp4_fraction")}
  for label in (0, 4, 6):
    spec = demo_data.video_spec(2, label, 1, **sizes)
    main = spec["main"]
    entry = {"centres": main["centres"].tolist(), "scale": main["scale"].tolist(),
             "half": list(main["half"])}
    w, h = spec["width"], spec["height"]
    idx = np.arange(0, spec["frames"], 7)
    # Identity resize, crop the central h x h square.
    boxes = demo_tracking.object_boxes(entry, idx, width=w, height=h, resize=(w, h),
                                       crop_size=h)
    for i, t in enumerate(idx):
      frame = np.zeros((h, w, 3), np.float32)
      s = main["scale"][t]
      demo_data._paste(frame, (255.0, 255.0, 255.0), *main["centres"][t],
                       main["half"][0] * s, main["half"][1] * s, "rect")
      ys, xs = np.nonzero(frame[..., 0] > 127)
      ox = (w - h) // 2
      drawn = [xs.min() - ox, ys.min(), xs.max() + 1 - ox, ys.max() + 1]
      np.testing.assert_allclose(boxes[i], drawn, atol=1.6)   # ~1 px soft edge
