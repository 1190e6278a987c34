"""Conversion on Apache Beam (DirectRunner): the same dataset as the local path, the same checks
before any work, remote (tf.io.gfile) paths, readers on its output; and, for both paths, the
empty-split warning and the all-failed error."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ctp_tf import defaults
from ctp_tf.data import convert, convert_beam, converters, pretrain_input, reader, shards
from test_convert import _frames, write_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "make_tfrecords.py")


def _make_folder_set(root):
  """Folder layout with train / test splits, mixed MP4 / AVI, one broken and one empty video."""
  sizes = {}
  for split, n in (("train", 3), ("test", 1)):
    for c, cls in enumerate(("jump", "run")):
      for g in range(n):
        ext = "mp4" if (g + c) % 2 == 0 else "avi"
        path = os.path.join(root, split, cls, f"{cls}_{g}.{ext}")
        frames = _frames(6 + g + c, seed=10 * c + g + (50 if split == "test" else 0))
        write_video(path, frames, "libx264" if ext == "mp4" else "mjpeg")
        sizes[f"{split}/{cls}/{cls}_{g}"] = len(frames)
  with open(os.path.join(root, "train", "jump", "broken.mp4"), "wb") as f:
    f.write(b"not a video\n" * 30)
  open(os.path.join(root, "train", "run", "empty.avi"), "wb").close()
  return sizes


def _records(out_dir, split):
  """media_id -> (raw JPEG bytes of every frame, context) from the serialized examples."""
  out = {}
  for path in tf.io.gfile.glob(os.path.join(out_dir, f"{split}-*-of-*.tfrecord")):
    for rec in tf.data.TFRecordDataset(path):
      ex = tf.train.SequenceExample.FromString(rec.numpy())
      ctx = ex.context.feature
      mid = ctx[shards.MEDIA_ID].bytes_list.value[0].decode()
      assert mid not in out, f"{mid} written twice"
      frames = [f.bytes_list.value[0] for f in ex.feature_lists.feature_list[shards.ENCODED].feature]
      out[mid] = (frames, {k: ctx[k].SerializeToString() for k in ctx})
  return out


def _same_meta(a, b):
  for key in ("classes", "splits", "resize_short", "jpeg_quality", "source", "format_version",
              "shard_order",
              "partial", "header_mismatches"):
    assert a[key] == b[key], key
  key = lambda f: (f["path"], f["reason"], f["split"])
  assert sorted(a["failures"], key=key) == sorted(b["failures"], key=key)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("folder_set"))
  videos = os.path.join(root, "videos")
  sizes = _make_folder_set(videos)
  local = os.path.join(root, "local")
  beam = os.path.join(root, "beam")
  kwargs = dict(resize_short=16, progress=False, num_shards=2)
  local_summary = convert.make_tfrecords("folder", videos, local, workers=1, **kwargs)
  # Two worker processes: the job's functions are pickled and run in other interpreters.
  beam_summary = convert.make_tfrecords("folder", videos, beam, workers=2,
                                        beam_runner="DirectRunner", **kwargs)
  return {"videos": videos, "sizes": sizes, "local": local, "beam": beam,
          "local_summary": local_summary, "beam_summary": beam_summary}


def test_beam_output_equals_local(both):
  local_meta = shards.load_dataset_json(both["local"])
  beam_meta = shards.load_dataset_json(both["beam"])
  _same_meta(local_meta, beam_meta)
  assert sorted(os.path.basename(f["path"]) for f in beam_meta["failures"]) == [
      "broken.mp4", "empty.avi"]
  for split in ("train", "test"):
    local, beam = _records(both["local"], split), _records(both["beam"], split)
    assert set(beam) == set(local) == {k for k in both["sizes"] if k.startswith(split + "/")}
    for mid in local:
      assert beam[mid][0] == local[mid][0], mid          # byte-identical JPEG frames
      assert len(beam[mid][0]) == both["sizes"][mid]
      assert beam[mid][1] == local[mid][1], mid          # label, index, size, rate, count
    assert sorted(os.path.basename(p) for p in tf.io.gfile.glob(
        os.path.join(both["beam"], f"{split}-*"))) == [
            shards.shard_name(split, i, 2) for i in range(2)]
  # Nothing of the job is left behind but the failures output.
  info = sorted(os.listdir(os.path.join(both["beam"], convert.SHARD_INFO_DIR)))
  assert not [n for n in info if n.endswith(convert_beam.TASK_SUFFIX) or ".tmp" in n], info
  with open(os.path.join(both["beam"], convert.SHARD_INFO_DIR,
                         convert_beam.FAILURES_FILE)) as f:
    failures = json.load(f)
  assert sorted(os.path.basename(f["path"]) for f in failures) == ["broken.mp4", "empty.avi"]


def test_beam_counters_and_summary(both):
  s, local = both["beam_summary"], both["local_summary"]
  for key in ("videos", "frames", "failures", "splits", "shards_written"):
    assert s[key] == local[key], key
  assert s["runner"] == "DirectRunner" and s["workers"] == 2
  assert s["beam_counters"] == {"videos_done": s["videos"], "videos_failed": 2,
                                "frames": s["frames"], "shards": 4}


def test_readers_read_the_beam_output(both):
  videos = list(reader.read_videos(both["beam"], "train", shuffle=False, seed=0))
  assert len(videos) == 6
  assert sorted(int(v["num_frames"]) for v in videos) == sorted(
      n for k, n in both["sizes"].items() if k.startswith("train/"))
  c = defaults.pretrain_config()
  c.data.clip_len, c.data.short_sides, c.data.crop_size = 8, (16, 20), 16
  c.data.shuffle_buffer = 2
  c.synthesis.scales = (4, 6, 8)
  (batch,) = pretrain_input.pretrain_dataset(both["beam"], c, batch_size=2, seed=0).take(1)
  assert batch["clip"].shape == (2, 8, 16, 16, 3) and batch["clip"].dtype == tf.uint8
  assert float(tf.math.reduce_std(tf.cast(batch["clip"], tf.float32))) > 1.0


def test_beam_resumes_only_missing_shards(both, tmp_path):
  out = str(tmp_path / "resume")
  kwargs = dict(resize_short=16, progress=False, num_shards=2, beam_runner="DirectRunner")
  convert.make_tfrecords("folder", both["videos"], out, **kwargs)
  victim = os.path.join(out, shards.shard_name("train", 1, 2))
  os.remove(victim)
  summary = convert.make_tfrecords("folder", both["videos"], out, **kwargs)
  assert summary["shards_written"] == 1 and summary["shards_skipped"] == 3
  assert summary["beam_counters"]["shards"] == 1
  _same_meta(shards.load_dataset_json(out), shards.load_dataset_json(both["local"]))
  assert _records(out, "train").keys() == _records(both["local"], "train").keys()


def test_listed_video_missing_on_disk_fails_before_the_pipeline(tmp_path, monkeypatch):
  vids = str(tmp_path / "v")
  write_video(os.path.join(vids, "a.mp4"), _frames(4))
  ann = str(tmp_path / "train.txt")
  with open(ann, "w") as f:
    f.write("a.mp4 jump\nnot_there.mp4 run\n")
  out = str(tmp_path / "o")

  def no_pipeline():
    raise AssertionError("the Beam pipeline was built before the inputs were checked")
  monkeypatch.setattr(convert_beam, "import_beam", no_pipeline)
  for runner in (None, "DirectRunner"):  # the same error on both paths
    with pytest.raises(converters.MissingVideosError, match="not_there.mp4"):
      convert.make_tfrecords("list", vids, out, annotations=ann, beam_runner=runner,
                             progress=False)
    assert not os.path.exists(out)
  proc = subprocess.run(
      [sys.executable, SCRIPT, "--dataset=list", f"--video_dir={vids}", f"--annotations={ann}",
       f"--out_dir={out}", "--beam_runner=DirectRunner"],
      capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "not_there.mp4" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.path.exists(out)


def test_remote_paths_through_tf_io_gfile(both):
  """ram:// stands in for gs://: listing, video reads on the workers and all writes go through
  tf.io.gfile (in-memory DirectRunner, so the job shares the test's ram filesystem)."""
  remote = "ram://ctp_beam_test"
  for dirpath, _, files in os.walk(both["videos"]):
    for name in files:
      src = os.path.join(dirpath, name)
      dst = remote + "/videos/" + os.path.relpath(src, both["videos"])
      tf.io.gfile.makedirs(os.path.dirname(dst))
      tf.io.gfile.copy(src, dst, overwrite=True)
  out = remote + "/out"
  summary = convert.make_tfrecords("folder", remote + "/videos", out, resize_short=16,
                                   progress=False, num_shards=2, workers=1,
                                   beam_runner="DirectRunner")
  assert summary["videos"] == both["local_summary"]["videos"]
  meta = shards.load_dataset_json(out)
  assert meta["splits"] == shards.load_dataset_json(both["local"])["splits"]
  assert sorted(os.path.basename(f["path"]) for f in meta["failures"]) == [
      "broken.mp4", "empty.avi"]
  local, got = _records(both["local"], "train"), _records(out, "train")
  assert got.keys() == local.keys()
  for mid in local:
    assert got[mid][0] == local[mid][0], mid


def test_beam_missing_is_a_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "apache_beam", None)
  with pytest.raises(convert_beam.BeamSetupError, match=r"pip install -e \"\.\[beam\]\""):
    convert_beam.import_beam()
  with pytest.raises(convert_beam.BeamSetupError, match="expected one of"):
    convert_beam.pipeline_options("NoSuchRunner")
  with pytest.raises(convert_beam.BeamSetupError, match="gs://"):
    convert_beam._check_paths("DataflowRunner", "/local/out", {})  # noqa: SLF001


# ------------------------------------------------------------------ empty and all-failed splits

def _all_failed_set(root):
  write_video(os.path.join(root, "train", "jump", "a.mp4"), _frames(5))
  write_video(os.path.join(root, "train", "run", "b.mp4"), _frames(5, seed=1))
  for name in ("c.mp4", "d.avi"):
    with open(os.path.join(root, "val", "jump" if name == "c.mp4" else "run", name), "wb") as f:
      f.write(b"" if name == "d.avi" else b"garbage" * 9)


@pytest.mark.parametrize("runner", [None, "DirectRunner"])
def test_every_video_of_a_split_failed_is_an_error(tmp_path, runner):
  videos = str(tmp_path / "v")
  os.makedirs(os.path.join(videos, "val", "jump"))
  os.makedirs(os.path.join(videos, "val", "run"))
  _all_failed_set(videos)
  out = str(tmp_path / "o")
  with pytest.raises(convert.AllVideosFailedError, match=r"every video of split 'val' failed"):
    convert.make_tfrecords("folder", videos, out, resize_short=0, progress=False,
                           beam_runner=runner)
  meta = shards.load_dataset_json(out)  # written first: the reasons are there
  assert meta["splits"]["val"]["videos"] == 0 and meta["splits"]["train"]["videos"] == 2
  assert len(meta["failures"]) == 2


def test_all_failed_split_script_exits_2_with_one_line(tmp_path):
  videos = str(tmp_path / "v")
  os.makedirs(os.path.join(videos, "val", "jump"))
  os.makedirs(os.path.join(videos, "val", "run"))
  _all_failed_set(videos)
  proc = subprocess.run(
      [sys.executable, SCRIPT, "--dataset=folder", f"--video_dir={videos}",
       f"--out_dir={tmp_path / 'o'}", "--resize_short=0", "--workers=1", "--quiet"],
      capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "split 'val'" in errors[0], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_all_missing_split_fails_before_work_and_empty_split_warns(tmp_path, capsys):
  vids = str(tmp_path / "v")
  write_video(os.path.join(vids, "a.mp4"), _frames(4))
  train, test = str(tmp_path / "train.txt"), str(tmp_path / "test.txt")
  with open(train, "w") as f:
    f.write("a.mp4 jump\n")
  with open(test, "w") as f:
    f.write("gone.mp4 jump\n")
  out = str(tmp_path / "o")
  with pytest.raises(convert.AllVideosFailedError, match="split 'test'.*gone.mp4"):
    convert.make_tfrecords("list", vids, out, annotations=f"train={train},test={test}",
                           skip_missing=True, resize_short=0, progress=False)
  assert not tf.io.gfile.glob(os.path.join(out, "*.tfrecord"))
  # A split listing no video at all: converted, with a warning.
  entry = converters.VideoEntry(os.path.join(vids, "a.mp4"), 0, "jump", "a")
  summary = convert.convert_dataset({"train": [entry], "val": []}, str(tmp_path / "o2"),
                                    classes=["jump"], resize_short=0, progress=True)
  assert summary["splits"]["val"]["videos"] == 0
  assert "warning: split 'val' has no videos" in capsys.readouterr().err


def test_direct_runner_runs_the_fn_api_runner_on_the_workers_asked():
  """Not Beam's DirectRunner switch, which first downloads Prism (ignoring the worker count)."""
  from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
  from apache_beam.runners.portability.fn_api_runner import FnApiRunner
  flags = convert_beam.pipeline_options("DirectRunner", "", workers=3)
  options = PipelineOptions(flags)
  assert isinstance(convert_beam._runner("DirectRunner", options), FnApiRunner)  # noqa: SLF001
  direct = options.view_as(DirectOptions)
  assert direct.direct_num_workers == 3 and direct.direct_running_mode == "multi_processing"
  assert convert_beam._direct_workers(flags) == 3  # noqa: SLF001
  mine = convert_beam.pipeline_options(
      "DirectRunner", "--direct_num_workers=1 --direct_running_mode=multi_threading", workers=3)
  assert PipelineOptions(mine).view_as(DirectOptions).direct_running_mode == "multi_threading"
  assert convert_beam._direct_workers(mine) == 1  # noqa: SLF001
  assert convert_beam._runner("DataflowRunner", options) is None  # noqa: SLF001
