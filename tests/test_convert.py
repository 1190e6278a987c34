"""Video files -> shards: listers of every dataset layout, decoding, failures, resume, workers."""

import json
import os
import struct

import av
import numpy as np
import pytest
import tensorflow as tf

from ctp_tf.data import convert, converters, shards

W, H = 32, 24


def _frames(n, seed=0, width=W, height=H):
  """Smooth frames with a moving bright square: small codec and JPEG error, visible motion."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  base = rng.uniform(40, 200, size=3)
  out = []
  for t in range(n):
    f = np.empty((height, width, 3), np.float32)
    f[..., 0] = base[0] + 30 * np.sin(xx / 6.0 + t * 0.3)
    f[..., 1] = base[1] + 30 * np.cos(yy / 5.0)
    f[..., 2] = base[2]
    x = 2 + 2 * t
    f[6:14, x:x + 8] = 235
    out.append(np.clip(f, 0, 255).astype(np.uint8))
  return np.stack(out)


def write_video(path, frames, codec="libx264", fps=25):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, "w") as c:
    options = {"crf": "10", "preset": "ultrafast"} if codec == "libx264" else {}
    s = c.add_stream(codec, rate=fps, options=options)
    s.width, s.height = frames.shape[2], frames.shape[1]
    s.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if codec == "mjpeg":
      s.codec_context.qmin = s.codec_context.qmax = 2
    for f in frames:
      for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        c.mux(p)
    for p in s.encode():
      c.mux(p)


def misleading_avi(path, frames, declared):
  """An MJPEG AVI whose header (avih dwTotalFrames, strh dwLength) declares `declared` frames."""
  write_video(path, frames, codec="mjpeg")
  data = bytearray(open(path, "rb").read())
  avih, strh = data.find(b"avih"), data.find(b"strh")
  struct.pack_into("<I", data, avih + 8 + 16, declared)
  struct.pack_into("<I", data, strh + 8 + 32, declared)
  open(path, "wb").write(bytes(data))


def _read_shards(out_dir, split):
  paths = sorted(tf.io.gfile.glob(os.path.join(out_dir, f"{split}-*-of-*.tfrecord")))
  out = {}
  for rec in tf.data.TFRecordDataset(paths):
    d = shards.parse_sequence_example(rec)
    mid = d["media_id"].numpy().decode()
    out[mid] = {"frames": np.stack([tf.io.decode_jpeg(j).numpy() for j in d["frames"]]),
                "label": int(d["label"]), "index": int(d["video_index"]),
                "num_frames": int(d["num_frames"]), "height": int(d["height"]),
                "width": int(d["width"])}
  return out


# ------------------------------------------------------------------------------ UCF-101 fixture

UCF_CLASSES = ["Jump", "Run"]


@pytest.fixture(scope="module")
def ucf_dir(tmp_path_factory):
  """UCF-101 layout: 2 classes, mixed MP4 / AVI, plus broken files in the train split."""
  root = str(tmp_path_factory.mktemp("ucf"))
  vids = os.path.join(root, "videos")
  source = {}
  train, test = [], []
  for c, cls in enumerate(UCF_CLASSES):
    for g in (1, 2, 3):
      rel = f"{cls}/v_{cls}_g{g:02d}_c01.{'mp4' if g % 2 else 'avi'}"
      frames = _frames(6 + g + c, seed=10 * c + g)
      write_video(os.path.join(vids, rel), frames, "libx264" if g % 2 else "mjpeg")
      source[rel] = frames
      (test if g == 1 else train).append(rel if g == 1 else f"{rel} {c + 1}")
  # Broken inputs: truncated MP4 (index lost), zero bytes, text named .avi, misleading header.
  good = open(os.path.join(vids, "Jump/v_Jump_g03_c01.mp4"), "rb").read()
  bad = {"Jump/v_Jump_g04_c01.mp4": good[:len(good) // 2], "Run/v_Run_g04_c01.avi": b"",
         "Run/v_Run_g05_c01.avi": b"this is not a video\n" * 20}
  for rel, data in bad.items():
    with open(os.path.join(vids, rel), "wb") as f:
      f.write(data)
    train.append(f"{rel} {UCF_CLASSES.index(rel.split('/')[0]) + 1}")
  lying = _frames(5, seed=99)
  misleading_avi(os.path.join(vids, "Run/v_Run_g06_c01.avi"), lying, declared=40)
  source["Run/v_Run_g06_c01.avi"] = lying
  train.append("Run/v_Run_g06_c01.avi 2")
  with open(os.path.join(root, "classInd.txt"), "w") as f:
    f.write("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))  # CRLF as shipped
  with open(os.path.join(root, "trainlist01.txt"), "w") as f:
    f.write("\n".join(train) + "\n")
  with open(os.path.join(root, "testlist01.txt"), "w") as f:
    f.write("\n".join(test) + "\n")
  return {"root": root, "videos": vids, "source": source, "train": train, "test": test,
          "bad": sorted(bad)}


@pytest.fixture(scope="module")
def converted(ucf_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("ucf_out"))
  summary = convert.make_tfrecords("ucf101", ucf_dir["videos"], out, split_dir=ucf_dir["root"],
                                   resize_short=0, workers=1, progress=False)
  return out, summary


def test_header_lies_decoding_counts(ucf_dir):
  path = os.path.join(ucf_dir["videos"], "Run/v_Run_g06_c01.avi")
  with av.open(path) as c:
    assert c.streams.video[0].frames == 40  # what the header claims
  video = convert.decode_video(path, resize_short=0)
  assert len(video.jpegs) == 5 and video.header_frames == 40


def test_round_trip_and_metadata(ucf_dir, converted):
  out, summary = converted
  meta = shards.load_dataset_json(out)
  assert meta["classes"] == UCF_CLASSES
  train = _read_shards(out, "train")
  test = _read_shards(out, "test")
  assert set(test) == {r for r in ucf_dir["test"]}
  good_train = [line.split()[0] for line in ucf_dir["train"]
                if line.split()[0] not in ucf_dir["bad"]]
  assert set(train) == set(good_train)
  for split, got, listed in (("train", train, ucf_dir["train"]), ("test", test, ucf_dir["test"])):
    rels = [line.split()[0] for line in listed]
    for rel, rec in got.items():
      src = ucf_dir["source"][rel]
      assert rec["index"] == rels.index(rel)  # position in the split file, failures included
      assert rec["label"] == UCF_CLASSES.index(rel.split("/")[0])
      assert rec["num_frames"] == len(src) == len(rec["frames"])
      assert (rec["height"], rec["width"]) == (H, W) == rec["frames"].shape[1:3]
      # JPEG error only, against what PyAV decodes from the file...
      decoded = np.stack([f for f, _ in convert.iter_frames(
          os.path.join(ucf_dir["videos"], rel))])
      err = rec["frames"].astype(np.float32) - decoded
      psnr = 10 * np.log10(255.0 ** 2 / np.mean(err ** 2))
      assert np.abs(err).mean() < 4.5 and psnr > 30.0, (rel, np.abs(err).mean(), psnr)
      # ...and codec + JPEG error against the frames we encoded.
      assert np.abs(rec["frames"].astype(np.float32) - src).mean() < 8.0
    assert meta["splits"][split]["videos"] == len(got)
    assert meta["splits"][split]["frames"] == sum(r["num_frames"] for r in got.values())
  n = meta["splits"]["train"]["shards"]
  assert len(tf.io.gfile.glob(os.path.join(out, "train-*-of-*.tfrecord"))) == n
  assert summary["videos"] == len(train) + len(test)
  assert meta["resize_short"] == 0 and meta["source"]["dataset"] == "ucf101"


def test_broken_videos_are_failures_with_reasons(ucf_dir, converted):
  out, summary = converted
  meta = shards.load_dataset_json(out)
  reasons = {os.path.relpath(f["path"], ucf_dir["videos"]): f["reason"] for f in meta["failures"]}
  assert sorted(reasons) == ucf_dir["bad"]
  assert "empty" in reasons["Run/v_Run_g04_c01.avi"]
  assert "cannot open" in reasons["Jump/v_Jump_g04_c01.mp4"]
  assert "cannot open" in reasons["Run/v_Run_g05_c01.avi"]
  assert summary["failures"] == 3
  mism = {os.path.basename(m["path"]): m for m in meta["header_mismatches"]}
  assert mism["v_Run_g06_c01.avi"]["header_frames"] == 40
  assert mism["v_Run_g06_c01.avi"]["frames"] == 5


def test_truncated_stream_fails_or_keeps_partial(tmp_path):
  """A stream cut mid-packet: a failure by default, the frames before the cut with keep_partial."""
  path = str(tmp_path / "cut.avi")
  write_video(path, _frames(10), codec="mjpeg")
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * 0.7)])
  with pytest.raises(convert.VideoDecodeError, match="decode error after [1-9]"):
    convert.decode_video(path, resize_short=0)
  video = convert.decode_video(path, resize_short=0, keep_partial=True)
  assert 1 <= len(video.jpegs) < 10 and video.error


def test_resize_short_side(tmp_path):
  assert convert.target_size(240, 320, 128) == (128, 171)
  assert convert.target_size(320, 240, 128) == (171, 128)
  assert convert.target_size(240, 320, 0) == (240, 320)
  landscape = str(tmp_path / "l.mp4")
  portrait = str(tmp_path / "p.mp4")
  write_video(landscape, _frames(3))
  write_video(portrait, _frames(3, width=24, height=32))
  a = convert.decode_video(landscape, resize_short=12)
  b = convert.decode_video(portrait, resize_short=12)
  assert (a.height, a.width) == (12, 16) and (b.height, b.width) == (16, 12)
  assert tf.io.decode_jpeg(a.jpegs[0]).shape == (12, 16, 3)
  assert a.frame_rate == pytest.approx(25.0)


# ------------------------------------------------------------------------------ resume

def _mtimes(out):
  return {p: os.stat(p).st_mtime_ns for p in tf.io.gfile.glob(os.path.join(out, "*.tfrecord"))}


def test_resume_rewrites_only_missing_shards(ucf_dir, tmp_path):
  out = str(tmp_path / "out")
  kwargs = dict(split_dir=ucf_dir["root"], resize_short=0, num_shards=3, progress=False)
  convert.make_tfrecords("ucf101", ucf_dir["videos"], out, **kwargs)
  before = _mtimes(out)
  first = shards.load_dataset_json(out)
  # Interrupted run: one shard lost, a temporary file left behind.
  victim = os.path.join(out, shards.shard_name("train", 1, 3))
  os.remove(victim)
  leftover = os.path.join(out, shards.shard_name("train", 2, 3) + ".tmp-99999")
  with open(leftover, "wb") as f:
    f.write(b"half a shard")
  summary = convert.make_tfrecords("ucf101", ucf_dir["videos"], out, **kwargs)
  after = _mtimes(out)
  assert summary["shards_written"] == 1 and summary["shards_skipped"] == len(before) - 1
  assert set(after) == set(before)
  changed = [p for p in after if after[p] != before[p]]
  assert changed == [victim]
  assert not os.path.exists(leftover)
  second = shards.load_dataset_json(out)
  # Failures of shards that were skipped are kept.
  assert sorted(f["path"] for f in second["failures"]) == sorted(
      f["path"] for f in first["failures"])
  assert second["splits"] == first["splits"]
  assert len(_read_shards(out, "train")) == first["splits"]["train"]["videos"]
  # Other settings over the same shards: refused, then allowed with overwrite.
  with pytest.raises(FileExistsError, match="other settings"):
    convert.make_tfrecords("ucf101", ucf_dir["videos"], out, **{**kwargs, "resize_short": 12})
  with pytest.raises(FileExistsError, match="would not write"):
    convert.make_tfrecords("ucf101", ucf_dir["videos"], out, **{**kwargs, "num_shards": 2})
  convert.make_tfrecords("ucf101", ucf_dir["videos"], out, **{**kwargs, "num_shards": 2},
                         overwrite=True)
  assert len(tf.io.gfile.glob(os.path.join(out, "train-*.tfrecord"))) == 2


def test_parallel_workers_match_single(ucf_dir, converted, tmp_path):
  out = str(tmp_path / "par")
  summary = convert.make_tfrecords("ucf101", ucf_dir["videos"], out, split_dir=ucf_dir["root"],
                                   resize_short=0, workers=2, progress=False)
  assert summary["workers"] == 2
  single = _read_shards(converted[0], "train")
  parallel = _read_shards(out, "train")
  assert single.keys() == parallel.keys()
  for k in single:
    np.testing.assert_array_equal(single[k]["frames"], parallel[k]["frames"])
    assert single[k]["index"] == parallel[k]["index"]
  assert len(shards.load_dataset_json(out)["failures"]) == 3


# ------------------------------------------------------------------------------ listers

def _touch(root, *rels):
  for rel in rels:
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").close()


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def test_ucf101_listing_flat_layout_and_errors(tmp_path):
  root = str(tmp_path)
  _touch(root, "flat/v_A_g01_c01.avi", "flat/v_B_g02_c01.avi", "flat/v_A_g02_c01.avi")
  _write(os.path.join(root, "s/classInd.txt"), "1 A\n2 B\n")
  _write(os.path.join(root, "s/trainlist02.txt"), "A/v_A_g02_c01.avi 1\nB/v_B_g02_c01.avi 2\n")
  _write(os.path.join(root, "s/testlist02.txt"), "A/v_A_g01_c01.avi\n")
  listing = converters.list_videos("ucf101", os.path.join(root, "flat"),
                                   split_dir=os.path.join(root, "s"), split=2)
  assert listing.classes == ["A", "B"]
  assert [(os.path.basename(e.path), e.label) for e in listing.splits["train"]] == [
      ("v_A_g02_c01.avi", 0), ("v_B_g02_c01.avi", 1)]
  assert listing.splits["test"][0].media_id == "A/v_A_g01_c01.avi"
  with pytest.raises(converters.DatasetError, match=r"trainlist03\.txt"):
    converters.list_videos("ucf101", os.path.join(root, "flat"),
                           split_dir=os.path.join(root, "s"), split=3)
  _write(os.path.join(root, "s/testlist02.txt"), "A/v_A_g01_c01.avi\nC/v_C_g01_c01.avi\n")
  with pytest.raises(converters.DatasetError, match=r"testlist02\.txt:2: class 'C'"):
    converters.list_videos("ucf101", os.path.join(root, "flat"),
                           split_dir=os.path.join(root, "s"), split=2)
  _write(os.path.join(root, "s/testlist02.txt"), "A/v_A_g01_c01.avi\n")
  _write(os.path.join(root, "s/trainlist02.txt"), "A/v_A_g02_c01.avi 2\n")
  with pytest.raises(converters.DatasetError, match="disagrees"):
    converters.list_videos("ucf101", os.path.join(root, "flat"),
                           split_dir=os.path.join(root, "s"), split=2)


def test_missing_videos_named_with_count(tmp_path):
  root = str(tmp_path)
  _touch(root, "v/A/v_A_g01_c01.avi")
  _write(os.path.join(root, "classInd.txt"), "1 A\n")
  _write(os.path.join(root, "trainlist01.txt"),
         "".join(f"A/v_A_g{g:02d}_c01.avi 1\n" for g in range(2, 16)))
  _write(os.path.join(root, "testlist01.txt"), "A/v_A_g01_c01.avi\n")
  with pytest.raises(converters.MissingVideosError) as e:
    converters.list_videos("ucf101", os.path.join(root, "v"), split_dir=root)
  msg = str(e.value)
  assert "14 listed video(s) not found" in msg and "trainlist01.txt (14)" in msg
  assert "v_A_g02_c01.avi" in msg and "and 4 more" in msg and "--skip_missing" in msg
  listing = converters.list_videos("ucf101", os.path.join(root, "v"), split_dir=root,
                                   skip_missing=True)
  assert len(listing.missing) == 14 and len(listing.splits["test"]) == 1


def test_skip_missing_records_failures(ucf_dir, tmp_path):
  root = str(tmp_path)
  _write(os.path.join(root, "classInd.txt"), "1 Jump\n2 Run\n")
  _write(os.path.join(root, "trainlist01.txt"),
         "Jump/v_Jump_g02_c01.avi 1\nJump/v_Jump_g99_c01.avi 1\n")
  _write(os.path.join(root, "testlist01.txt"), "Run/v_Run_g01_c01.mp4\n")
  out = str(tmp_path / "out")
  summary = convert.make_tfrecords("ucf101", ucf_dir["videos"], out, split_dir=root,
                                   skip_missing=True, resize_short=0, progress=False)
  meta = shards.load_dataset_json(out)
  assert summary["videos"] == 2
  assert [os.path.basename(f["path"]) for f in meta["failures"]] == ["v_Jump_g99_c01.avi"]
  assert "file not found" in meta["failures"][0]["reason"]


def test_hmdb51_listing(tmp_path):
  root = str(tmp_path)
  _touch(root, "v/brush_hair/a.avi", "v/brush_hair/b.avi", "v/brush_hair/c.avi",
         "v/cartwheel/d.avi", "v/cartwheel/e.avi")
  _write(os.path.join(root, "s/brush_hair_test_split1.txt"), "a.avi 1 \nb.avi 2 \nc.avi 0 \n")
  _write(os.path.join(root, "s/cartwheel_test_split1.txt"), "d.avi 2\ne.avi 1\n")
  listing = converters.list_videos("hmdb51", os.path.join(root, "v"),
                                   split_dir=os.path.join(root, "s"), split=1)
  assert listing.classes == ["brush_hair", "cartwheel"]
  assert [(e.media_id, e.label) for e in listing.splits["train"]] == [("a.avi", 0), ("e.avi", 1)]
  assert [(e.media_id, e.label) for e in listing.splits["test"]] == [("b.avi", 0), ("d.avi", 1)]
  with pytest.raises(converters.DatasetError, match=r"_test_split2\.txt"):
    converters.list_videos("hmdb51", os.path.join(root, "v"), split_dir=os.path.join(root, "s"),
                           split=2)
  _write(os.path.join(root, "s/cartwheel_test_split1.txt"), "d.avi 7\n")
  with pytest.raises(converters.DatasetError, match=r"cartwheel_test_split1\.txt:1"):
    converters.list_videos("hmdb51", os.path.join(root, "v"), split_dir=os.path.join(root, "s"))


def test_kinetics_listing(tmp_path):
  root = str(tmp_path)
  _touch(root, "v/train/abseiling/aaa_000010_000020.mp4", "v/train/zumba/bbb_000000_000010.mp4",
         "v/val/ccc_000005_000015.mp4", "v/test/ddd_000001_000011.mkv")
  _write(os.path.join(root, "train.csv"), "label,youtube_id,time_start,time_end,split\n"
         "zumba,bbb,0,10,train\nabseiling,aaa,10,20,train\n")
  _write(os.path.join(root, "validate.csv"), "label,youtube_id,time_start,time_end,split\n"
         "zumba,ccc,5,15,val\n")
  _write(os.path.join(root, "test.csv"), "youtube_id,time_start,time_end,split\n"
         "ddd,1,11,test\n")
  ann = ",".join(os.path.join(root, f) for f in ("train.csv", "validate.csv", "test.csv"))
  listing = converters.list_videos("kinetics", os.path.join(root, "v"), annotations=ann)
  assert listing.classes == ["abseiling", "zumba"]
  assert [(e.media_id, e.label) for e in listing.splits["train"]] == [
      ("bbb_000000_000010", 1), ("aaa_000010_000020", 0)]
  assert listing.splits["val"][0].label == 1
  assert listing.splits["test"][0].label == -1 and listing.splits["test"][0].path.endswith(".mkv")
  _write(os.path.join(root, "validate.csv"), "label,youtube_id,time_start,time_end,split\n"
         "yodelling,ccc,5,15,val\n")
  with pytest.raises(converters.DatasetError, match=r"validate\.csv:2: class 'yodelling'"):
    converters.list_videos("kinetics", os.path.join(root, "v"), annotations=ann)
  with pytest.raises(converters.DatasetError, match="nope.csv"):
    converters.list_videos("kinetics", os.path.join(root, "v"),
                           annotations=os.path.join(root, "nope.csv"))


def test_ssv2_listing(tmp_path):
  root = str(tmp_path)
  _touch(root, "v/1.webm", "v/2.webm", "v/3.webm")
  labels = {"Pushing something from left to right": "1", "Holding something": "0"}
  _write(os.path.join(root, "a/something-something-v2-labels.json"), json.dumps(labels))
  _write(os.path.join(root, "a/something-something-v2-train.json"), json.dumps([
      {"id": "2", "label": "pushing a cup from left to right",
       "template": "Pushing [something] from left to right", "placeholders": ["a cup"]},
      {"id": "1", "label": "holding a pen", "template": "Holding [something]"}]))
  _write(os.path.join(root, "a/something-something-v2-validation.json"), json.dumps([
      {"id": "3", "template": "Holding [something]"}]))
  listing = converters.list_videos("ssv2", os.path.join(root, "v"),
                                   annotations=os.path.join(root, "a"))
  assert listing.classes == ["Holding something", "Pushing something from left to right"]
  assert [(e.media_id, e.label) for e in listing.splits["train"]] == [("2", 1), ("1", 0)]
  assert [(e.media_id, e.label) for e in listing.splits["val"]] == [("3", 0)]
  _write(os.path.join(root, "a/something-something-v2-validation.json"), json.dumps([
      {"id": "3", "template": "Juggling [something]"}]))
  with pytest.raises(converters.DatasetError, match="Juggling something"):
    converters.list_videos("ssv2", os.path.join(root, "v"), annotations=os.path.join(root, "a"))


def test_folder_and_list_listing(tmp_path):
  root = str(tmp_path)
  _touch(root, "f/cat/1.mp4", "f/cat/notes.txt", "f/dog/2.avi", "f/dog/sub/3.webm")
  listing = converters.list_videos("folder", os.path.join(root, "f"))
  assert listing.classes == ["cat", "dog"] and list(listing.splits) == ["train"]
  assert [(e.media_id, e.label) for e in listing.splits["train"]] == [
      ("cat/1", 0), ("dog/2", 1), ("dog/sub/3", 1)]
  _touch(root, "s/train/cat/1.mp4", "s/test/dog/2.mp4", "s/validation/cat/3.mp4")
  split_listing = converters.list_videos("folder", os.path.join(root, "s"))
  assert sorted(split_listing.splits) == ["test", "train", "val"]
  assert split_listing.splits["test"][0].label == 1
  _touch(root, "l/a b.mp4", "l/c.mp4")
  _write(os.path.join(root, "tr.txt"), "a b.mp4 running\nc.mp4 jumping\n")
  _write(os.path.join(root, "te.txt"), "c.mp4 running\n")
  named = converters.list_videos("list", os.path.join(root, "l"), annotations=(
      f"train={os.path.join(root, 'tr.txt')},test={os.path.join(root, 'te.txt')}"))
  assert named.classes == ["jumping", "running"]
  assert [(e.media_id, e.label) for e in named.splits["train"]] == [("a b.mp4", 1), ("c.mp4", 0)]
  _write(os.path.join(root, "idx.txt"), "a b.mp4 2\nc.mp4 0\n")
  indexed = converters.list_videos("list", os.path.join(root, "l"),
                                   annotations=os.path.join(root, "idx.txt"))
  assert indexed.classes == ["0", "1", "2"] and indexed.splits["train"][0].label == 2
  with pytest.raises(converters.DatasetError, match="expected one of"):
    converters.list_videos("nope", root)


def test_script_reports_bad_input(tmp_path):
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  os.makedirs(tmp_path / "v")
  proc = subprocess.run(
      [sys.executable, os.path.join(repo, "scripts", "make_tfrecords.py"), "--dataset=ucf101",
       f"--video_dir={tmp_path / 'v'}", f"--out_dir={tmp_path / 'o'}"],
      capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "classInd.txt" in proc.stderr and "trainlist01.txt" in proc.stderr
  assert not os.path.exists(tmp_path / "o" / "dataset.json")


def test_shards_mix_classes_in_their_write_order():
  """Split lists are class-sorted; the plan writes every shard in a fixed shuffled order, so a
  reader's stream is not class-sorted (a small shuffle buffer would give 1-3 classes a batch)."""
  from ctp_tf.data import convert_core
  entries = [f"class{i // 16}/v{i}.mp4" for i in range(64)]     # 4 classes, sorted
  tasks = convert_core.plan_shards({"train": entries}, "/tmp/out", num_shards=4)
  again = convert_core.plan_shards({"train": entries}, "/tmp/out", num_shards=4)
  assert [t.items for t in tasks] == [t.items for t in again]   # a pure function of the list
  assert sorted(i for t in tasks for i, _ in t.items) == list(range(64))
  for t in tasks:
    assert all(entries[i] == e for i, e in t.items)             # each keeps its split index
    classes = [i // 16 for i, _ in t.items]
    assert len(set(classes)) == 4
    first_half = set(classes[:len(classes) // 2])
    assert len(first_half) >= 3, classes                        # not class by class
