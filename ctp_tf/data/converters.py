"""Lists the videos of a dataset with their labels and splits, checking everything up front.

One function per dataset layout turns split/annotation files into a `Listing`: class names and,
per split, `VideoEntry(path, label, label_string, media_id)` in the order the split files give.
All input problems (a missing split file, an unknown class name, listed videos that are not on
disk) are found here, before any decoding starts, and raised as `DatasetError` naming the files,
so a conversion never fails an hour in on something we could have seen at the start.

Layouts:
- `ucf101`: `classInd.txt`, `trainlistNN.txt`, `testlistNN.txt` in `split_dir`; videos under
  `video_dir/<Class>/<file>` (or flat in `video_dir`).
- `hmdb51`: `<class>_test_splitN.txt` files in `split_dir` (id 1 train, 2 test, 0 unused); videos
  under `video_dir/<class>/<file>` (or flat).
- `kinetics`: CSV(s) `label,youtube_id,time_start,time_end,split` (Kinetics-400 and -600); files
  `{youtube_id}_{start:06d}_{end:06d}.<ext>` anywhere under `video_dir`.
- `ssv2`: Something-Something v2 labels JSON plus train / validation JSON; files `{id}.webm`.
- `folder`: `video_dir/<class>/*.<ext>`, or `video_dir/<split>/<class>/*` for split folders
  named train / val / validation / test.
- `list`: plain text files of `path label` lines (label a class name or an integer index).

Paths may be remote (`gs://...`, anything tf.io.gfile reads): the videos, split files and
annotations are then listed and read with tf.io.gfile (TensorFlow is imported only then), and
remote video folders are listed once instead of checking each listed file.
"""

import collections
import csv
import dataclasses
import glob
import io
import json
import os
import re

DATASETS = ("ucf101", "hmdb51", "kinetics", "ssv2", "folder", "list")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ogv")
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "validate": "val",
                 "test": "test"}
_MAX_LISTED = 10


class DatasetError(ValueError):
  """Bad dataset input (missing split files, unknown classes, missing videos): names the files."""


class MissingVideosError(DatasetError, FileNotFoundError):
  """Split files list videos that are not on disk."""

  def __init__(self, message, missing):
    super().__init__(message)
    self.missing = missing


@dataclasses.dataclass(frozen=True)
class VideoEntry:
  path: str            # file on disk
  label: int           # index into `Listing.classes`; -1 for unlabelled (test) videos
  label_string: str
  media_id: str        # stable id as the annotations name the video


@dataclasses.dataclass
class Listing:
  classes: list
  splits: dict                       # split name -> [VideoEntry], in annotation order
  missing: list = dataclasses.field(default_factory=list)   # [{"path", "split", "listed_in"}]
  source: dict = dataclasses.field(default_factory=dict)


def _format_list(items, limit=_MAX_LISTED):
  items = list(items)
  shown = "\n  ".join(str(i) for i in items[:limit])
  more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
  return f"\n  {shown}{more}"


# ---------------------------------------------------------------- local or remote (tf.io.gfile)

def is_remote(path):
  return "://" in str(path)


def _gfile():
  import tensorflow as tf  # noqa: PLC0415 -- only for remote paths
  return tf.io.gfile


def _isdir(path):
  return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def _isfile(path):
  if is_remote(path):
    return _gfile().exists(path) and not _gfile().isdir(path)
  return os.path.isfile(path)


def _glob(pattern):
  return sorted(_gfile().glob(pattern) if is_remote(pattern) else glob.glob(pattern))


def _listdir(path):
  if is_remote(path):
    return [n.rstrip("/") for n in _gfile().listdir(path)]
  return os.listdir(path)


def _walk(root):
  if is_remote(root):
    return ((d, subdirs, [f.rstrip("/") for f in files])
            for d, subdirs, files in _gfile().walk(root))
  return os.walk(root, followlinks=True)


def _open_text(path, newline=None):
  """A text file, BOM dropped (split files come with CRLF and BOMs)."""
  if is_remote(path):
    with _gfile().GFile(path, "rb") as f:
      text = f.read().decode("utf-8-sig")
    return io.StringIO(text, newline=newline)
  return open(path, newline=newline, encoding="utf-8-sig")


def _abspath(path):
  return path if is_remote(path) else os.path.abspath(path)


def _read_lines(path):
  """Non-empty stripped lines with 1-based line numbers (UCF/HMDB files use CRLF, BOMs, tabs)."""
  with _open_text(path) as f:
    return [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]


def _require_files(paths, what):
  missing = [p for p in paths if not _isfile(p)]
  if missing:
    raise DatasetError(f"{what}: {len(missing)} file(s) not found:{_format_list(missing)}")


class _Finder:
  """Finds listed videos: exact path first, then by file name or stem anywhere under the root.

  Datasets are unpacked in many ways (class folders or flat, split folders, other extensions
  after re-encoding, different letter case), so a miss falls back to an index of all files
  under `video_dir`, built once and only when needed.
  """

  def __init__(self, root):
    self.root = root
    self._by_name = None
    self._by_stem = None
    self._paths = None

  def _index(self):
    if self._by_name is None:
      self._by_name, self._by_stem, self._paths = {}, {}, set()
      for dirpath, _, files in _walk(self.root):
        for name in sorted(files):
          full = os.path.join(dirpath, name)
          self._paths.add(full)
          self._by_name.setdefault(name.lower(), full)
          stem, ext = os.path.splitext(name)
          if ext.lower() in VIDEO_EXTENSIONS:
            self._by_stem.setdefault(stem.lower(), full)

  def find(self, rel):
    exact = rel if os.path.isabs(rel) or is_remote(rel) else os.path.join(self.root, rel)
    if is_remote(exact):
      # One listing of the bucket, not a request per listed video.
      self._index()
      if exact in self._paths:
        return exact
    elif os.path.isfile(exact):
      return exact
    self._index()
    return self._by_name.get(os.path.basename(rel).lower())

  def find_stem(self, *stems):
    self._index()
    for stem in stems:
      hit = self._by_stem.get(stem.lower())
      if hit:
        return hit
    return None


def _check_video_dir(video_dir):
  if not _isdir(video_dir):
    raise DatasetError(f"--video_dir {video_dir!r} is not a directory")


def _resolve(listed, finder, skip_missing, describe):
  """Maps {split: [(rel, label, label_string, media_id, listed_in)]} to entries; checks files."""
  splits, missing = {}, []
  for split, rows in listed.items():
    entries = []
    for rel, label, label_string, media_id, listed_in in rows:
      path = finder(rel)
      if path is None:
        missing.append({"path": os.path.join(describe, rel) if not (
            os.path.isabs(rel) or is_remote(rel)) else rel,
                        "split": split, "listed_in": listed_in})
        continue
      entries.append(VideoEntry(path=path, label=label, label_string=label_string,
                                media_id=media_id))
    splits[split] = entries
  if missing and not skip_missing:
    by_file = collections.Counter(m["listed_in"] for m in missing)
    sources = ", ".join(f"{os.path.basename(k)} ({v})" for k, v in sorted(by_file.items()))
    raise MissingVideosError(
        f"{len(missing)} listed video(s) not found under {describe!r} (listed in {sources}):"
        f"{_format_list(m['path'] for m in missing)}\n"
        "Fix --video_dir, or pass --skip_missing to record them as failures and convert the rest.",
        missing)
  empty = [s for s, e in splits.items() if not e]
  if empty and not missing:
    raise DatasetError(f"split(s) {empty} list no videos")
  return splits, missing


# ---------------------------------------------------------------------------------------- UCF-101

_UCF_NAME = re.compile(r"^v_(.+)_g\d+_c\d+$")


def list_ucf101(video_dir, split_dir=None, split=1, *, skip_missing=False):
  """UCF-101 (and the demo data): `classInd.txt` + `trainlistNN.txt` / `testlistNN.txt`."""
  _check_video_dir(video_dir)
  split_dir = split_dir or video_dir
  class_file = os.path.join(split_dir, "classInd.txt")
  list_files = {"train": os.path.join(split_dir, f"trainlist{int(split):02d}.txt"),
                "test": os.path.join(split_dir, f"testlist{int(split):02d}.txt")}
  _require_files([class_file, *list_files.values()], f"UCF-101 split {split} in {split_dir!r}")

  classes, problems = [], []
  for n, line in _read_lines(class_file):
    parts = line.split()
    if len(parts) != 2 or not parts[0].isdigit():
      problems.append(f"{class_file}:{n}: expected 'index ClassName', got {line!r}")
      continue
    if int(parts[0]) != len(classes) + 1:
      problems.append(f"{class_file}:{n}: class index {parts[0]} out of order "
                      f"(expected {len(classes) + 1})")
    classes.append(parts[1])
  if problems:
    raise DatasetError("bad class index file:" + _format_list(problems))
  if not classes:
    raise DatasetError(f"{class_file} lists no classes")
  index = {c: i for i, c in enumerate(classes)}
  index_lower = {c.lower(): i for i, c in enumerate(classes)}

  listed, unknown = {}, []
  for split_name, path in list_files.items():
    rows = []
    for n, line in _read_lines(path):
      parts = line.split()
      rel = parts[0].replace("\\", "/")
      folder = rel.split("/")[0] if "/" in rel else None
      if folder is None:  # flat list: the class is in the file name (v_<Class>_gXX_cYY)
        m = _UCF_NAME.match(os.path.splitext(os.path.basename(rel))[0])
        folder = m.group(1) if m else ""
      label = index.get(folder, index_lower.get(folder.lower()))
      if label is None:
        unknown.append(f"{path}:{n}: class {folder!r} of {rel!r} is not in classInd.txt")
        continue
      if len(parts) > 1:
        if not parts[1].isdigit() or int(parts[1]) - 1 != label:
          unknown.append(f"{path}:{n}: label {parts[1]!r} disagrees with class folder "
                         f"{folder!r} (= {label + 1} in classInd.txt)")
          continue
      rows.append((rel, label, classes[label], rel, path))
    listed[split_name] = rows
  if unknown:
    raise DatasetError(f"{len(unknown)} unknown class name(s) / labels:" + _format_list(unknown))
  finder = _Finder(video_dir)
  splits, missing = _resolve(listed, finder.find, skip_missing, video_dir)
  return Listing(classes, splits, missing, {"dataset": "ucf101", "video_dir": video_dir,
                                           "split_dir": split_dir, "split": int(split)})


# ---------------------------------------------------------------------------------------- HMDB-51

def list_hmdb51(video_dir, split_dir=None, split=1, *, skip_missing=False):
  """HMDB-51: `<class>_test_split<N>.txt`, lines `file.avi id` with 1 train, 2 test, 0 unused."""
  _check_video_dir(video_dir)
  split_dir = split_dir or video_dir
  pattern = os.path.join(split_dir, f"*_test_split{int(split)}.txt")
  files = _glob(pattern)
  if not files:
    raise DatasetError(f"HMDB-51 split {split}: no split files match {pattern!r}")
  suffix = f"_test_split{int(split)}.txt"
  classes = [os.path.basename(f)[:-len(suffix)] for f in files]
  listed, problems = {"train": [], "test": []}, []
  for label, (cls, path) in enumerate(zip(classes, files)):
    for n, line in _read_lines(path):
      parts = line.split()
      if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
        problems.append(f"{path}:{n}: expected 'file.avi 0|1|2', got {line!r}")
        continue
      if parts[1] == "0":
        continue
      split_name = "train" if parts[1] == "1" else "test"
      listed[split_name].append((os.path.join(cls, parts[0]), label, cls, parts[0], path))
  if problems:
    raise DatasetError(f"{len(problems)} bad line(s) in HMDB-51 split files:"
                       + _format_list(problems))
  finder = _Finder(video_dir)
  splits, missing = _resolve(listed, finder.find, skip_missing, video_dir)
  return Listing(classes, splits, missing, {"dataset": "hmdb51", "video_dir": video_dir,
                                           "split_dir": split_dir, "split": int(split)})


# ---------------------------------------------------------------------------------------- Kinetics

def _annotation_files(annotations, exts, what):
  """`annotations` may be one file, a comma-separated list, or a directory of such files."""
  if not annotations:
    raise DatasetError(f"{what} needs --annotations")
  files = []
  for part in str(annotations).split(","):
    part = part.strip()
    if _isdir(part):
      found = sorted(p for p in _glob(os.path.join(part, "*")) if p.lower().endswith(exts))
      if not found:
        raise DatasetError(f"{what}: no {'/'.join(exts)} files in --annotations dir {part!r}")
      files.extend(found)
    else:
      files.append(part)
  _require_files(files, f"{what} annotations")
  return files


def _split_from_name(name):
  name = name.strip().lower()
  return SPLIT_FOLDERS.get(name, name)


def list_kinetics(video_dir, annotations, *, skip_missing=False):
  """Kinetics-400/600 CSVs: `label,youtube_id,time_start,time_end,split` (label absent in test)."""
  _check_video_dir(video_dir)
  files = _annotation_files(annotations, (".csv",), "Kinetics")
  rows, problems = [], []
  for path in files:
    with _open_text(path, newline="") as f:
      reader = csv.DictReader(f)
      fields = set(reader.fieldnames or [])
      need = {"youtube_id", "time_start", "time_end"}
      if not need <= fields:
        raise DatasetError(f"{path}: CSV header needs columns {sorted(need)} "
                           f"(+ label, split); found {sorted(fields)}")
      file_split = _split_from_name(os.path.splitext(os.path.basename(path))[0])
      for n, row in enumerate(reader, 2):
        try:
          start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (TypeError, ValueError):
          problems.append(f"{path}:{n}: bad time_start/time_end {row.get('time_start')!r}, "
                          f"{row.get('time_end')!r}")
          continue
        split = _split_from_name(row.get("split") or file_split)
        label = (row.get("label") or "").strip()
        if label == split == "test":  # some test CSVs carry the word "test" as label
          label = ""
        rows.append((split, label, row["youtube_id"].strip(), start, end, path, n))
  if problems:
    raise DatasetError(f"{len(problems)} bad line(s) in Kinetics CSVs:" + _format_list(problems))
  # Classes come from the training rows; a label elsewhere that training never saw is an error.
  classes = sorted({r[1] for r in rows if r[0] == "train" and r[1]}) or sorted(
      {r[1] for r in rows if r[1]})
  index = {c: i for i, c in enumerate(classes)}
  unknown = [f"{path}:{n}: class {label!r} not among the training classes"
             for split, label, _, _, _, path, n in rows if label and label not in index]
  if unknown:
    raise DatasetError(f"{len(unknown)} unknown class name(s):" + _format_list(unknown))
  listed = collections.OrderedDict()
  for split, label, yid, start, end, path, _ in rows:
    stem = f"{yid}_{start:06d}_{end:06d}"
    listed.setdefault(split, []).append(
        (stem, index.get(label, -1), label, stem, path))
  finder = _Finder(video_dir)

  def find(stem):
    return finder.find_stem(stem, stem.rsplit("_", 2)[0])

  splits, missing = _resolve(listed, find, skip_missing, video_dir)
  return Listing(classes, splits, missing, {"dataset": "kinetics", "video_dir": video_dir,
                                           "annotations": files, "num_classes": len(classes)})


# ---------------------------------------------------------------------------- Something-Something

def _ssv2_files(annotations):
  if not annotations:
    raise DatasetError("ssv2 needs --annotations (labels JSON, or the folder holding the JSONs)")
  base = annotations if _isdir(annotations) else os.path.dirname(annotations)
  found = {}
  for key, pattern in (("labels", "*labels.json"), ("train", "*train.json"),
                       ("val", "*validation.json")):
    hits = _glob(os.path.join(base, pattern))
    found[key] = hits[0] if hits else os.path.join(base, pattern)
  if not _isdir(annotations):
    found["labels"] = annotations
  _require_files(list(found.values()), "Something-Something v2 annotations")
  return found


def list_ssv2(video_dir, annotations, *, skip_missing=False):
  """Something-Something v2: labels JSON (`{template: "index"}`) + train / validation JSON."""
  _check_video_dir(video_dir)
  files = _ssv2_files(annotations)
  with _open_text(files["labels"]) as f:
    labels = json.load(f)
  try:
    by_index = sorted((int(v), k) for k, v in labels.items())
  except (AttributeError, ValueError) as e:
    raise DatasetError(f"{files['labels']}: expected {{template: index}}: {e}") from None
  classes = [k for _, k in by_index]
  if [i for i, _ in by_index] != list(range(len(classes))):
    raise DatasetError(f"{files['labels']}: class indices are not 0..{len(classes) - 1}")
  index = {c: i for i, c in enumerate(classes)}
  listed, unknown = {}, []
  for split in ("train", "val"):
    with _open_text(files[split]) as f:
      items = json.load(f)
    rows = []
    for n, item in enumerate(items):
      template = str(item.get("template", "")).replace("[", "").replace("]", "")
      if template not in index:
        unknown.append(f"{files[split]} item {n} (id {item.get('id')}): template {template!r} "
                       "is not in the labels JSON")
        continue
      vid = str(item["id"])
      rows.append((vid, index[template], template, vid, files[split]))
    listed[split] = rows
  if unknown:
    raise DatasetError(f"{len(unknown)} unknown class name(s):" + _format_list(unknown))
  finder = _Finder(video_dir)

  def find(vid):
    return finder.find(f"{vid}.webm") or finder.find_stem(vid)

  splits, missing = _resolve(listed, find, skip_missing, video_dir)
  return Listing(classes, splits, missing, {"dataset": "ssv2", "video_dir": video_dir,
                                           "annotations": files})


# ---------------------------------------------------------------------------------- folder / list

def _videos_in(folder):
  out = []
  for dirpath, _, files in _walk(folder):
    out.extend(os.path.join(dirpath, f) for f in files
               if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS)
  return sorted(out)


def _subdirs(folder):
  return sorted(d for d in _listdir(folder) if _isdir(os.path.join(folder, d))
                and not d.startswith("."))


def list_folder(video_dir):
  """Class-per-folder tree; top-level folders named train/val/validation/test are splits."""
  _check_video_dir(video_dir)
  top = _subdirs(video_dir)
  if top and all(d.lower() in SPLIT_FOLDERS for d in top):
    roots = {_split_from_name(d): os.path.join(video_dir, d) for d in top}
  else:
    roots = {"train": video_dir}
  classes = sorted({c for root in roots.values() for c in _subdirs(root)})
  if not classes:
    raise DatasetError(f"--video_dir {video_dir!r} has no class folders")
  index = {c: i for i, c in enumerate(classes)}
  splits = {}
  for split, root in roots.items():
    entries = []
    for cls in _subdirs(root):
      for path in _videos_in(os.path.join(root, cls)):
        rel = os.path.relpath(path, video_dir)
        entries.append(VideoEntry(path, index[cls], cls, os.path.splitext(rel)[0]))
    splits[split] = entries
  empty = [f"{roots[s]}" for s, e in splits.items() if not e]
  if empty:
    raise DatasetError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under:"
                       + _format_list(empty))
  return Listing(classes, splits, [], {"dataset": "folder", "video_dir": video_dir})


def list_plain(video_dir, annotations, *, skip_missing=False):
  """Plain lists of `path label` lines; `--annotations=train=a.txt,test=b.txt` (or one file).

  Labels that are all integers are class indices; otherwise they are class names (sorted).
  """
  _check_video_dir(video_dir)
  if not annotations:
    raise DatasetError("--dataset=list needs --annotations=FILE or split=FILE,split=FILE")
  specs = []
  for part in str(annotations).split(","):
    name, sep, path = part.partition("=")
    if sep:
      specs.append((name.strip(), path.strip()))
    else:  # one bare file is the train split; several are named after their files
      many = len(str(annotations).split(",")) > 1
      specs.append((os.path.splitext(os.path.basename(part.strip()))[0] if many else "train",
                    part.strip()))
  _require_files([p for _, p in specs], "list annotations")
  raw, problems = {}, []
  for split, path in specs:
    rows = []
    for n, line in _read_lines(path):
      parts = line.rsplit(None, 1)  # the path may contain spaces; the label may not
      if len(parts) != 2:
        problems.append(f"{path}:{n}: expected 'path label', got {line!r}")
        continue
      rows.append((parts[0], parts[1], path, n))
    raw[split] = rows
  if problems:
    raise DatasetError(f"{len(problems)} bad line(s):" + _format_list(problems))
  labels = [r[1] for rows in raw.values() for r in rows]
  if labels and all(re.fullmatch(r"\d+", lab) for lab in labels):
    classes = [str(i) for i in range(max(int(lab) for lab in labels) + 1)]
  else:
    classes = sorted(set(labels))
  index = {c: i for i, c in enumerate(classes)}

  def label_of(lab):
    return index[str(int(lab))] if lab.isdigit() else index[lab]

  listed = {split: [(rel, label_of(lab), classes[label_of(lab)], rel, path)
                    for rel, lab, path, _ in rows] for split, rows in raw.items()}
  finder = _Finder(video_dir)
  splits, missing = _resolve(listed, finder.find, skip_missing, video_dir)
  return Listing(classes, splits, missing, {"dataset": "list", "video_dir": video_dir,
                                           "annotations": [p for _, p in specs]})


def list_videos(dataset, video_dir, *, split_dir=None, split=1, annotations=None,
                skip_missing=False):
  """Dispatches to the dataset's lister. Raises `DatasetError` naming bad files before any work.

  Example:
    listing = list_videos("ucf101", "demo/videos", split_dir="demo", split=1)
    listing.classes[:2], len(listing.splits["train"])
  """
  # Absolute paths: dataset.json then names files that stay findable from any directory.
  video_dir = _abspath(video_dir)
  split_dir = _abspath(split_dir) if split_dir else None
  if dataset == "ucf101":
    return list_ucf101(video_dir, split_dir, split, skip_missing=skip_missing)
  if dataset == "hmdb51":
    return list_hmdb51(video_dir, split_dir, split, skip_missing=skip_missing)
  if dataset == "kinetics":
    return list_kinetics(video_dir, annotations, skip_missing=skip_missing)
  if dataset == "ssv2":
    return list_ssv2(video_dir, annotations, skip_missing=skip_missing)
  if dataset == "folder":
    return list_folder(video_dir)
  if dataset == "list":
    return list_plain(video_dir, annotations, skip_missing=skip_missing)
  raise DatasetError(f"--dataset={dataset!r}: expected one of {', '.join(DATASETS)}")
