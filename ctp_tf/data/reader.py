"""Shard listing and reading: shard glob -> interleaved, shuffled, sharded tf.data of videos.

Videos come out as `shards.parse_sequence_example` dicts with the frames still JPEG-encoded;
frames are decoded later, after the sampler has chosen which ones (see `augment.py`).
Paths may be local or anything `tf.io.gfile` reads (`gs://...`).
"""

import concurrent.futures
import contextlib
import os
import struct

import tensorflow as tf

from ctp_tf.data import shards
from ctp_tf.errors import DataError


class MissingShardsError(DataError, FileNotFoundError):
  """The data dir or some of a split's shards do not exist."""


class EmptySplitError(DataError):
  """A split whose shards hold no video (reading it forever would hang a repeating stream)."""


class CorruptShardError(DataError):
  """A shard that is not a TFRecord file, or is truncated or damaged; names the file."""


_shard_glob = shards.shard_pattern


def list_shards(data_dir, split):
  """Sorted shard paths of `split` in `data_dir`; raises with the directory and glob named.

  Raises:
    FileNotFoundError: the directory does not exist, holds no shards for the split, or misses
      some of the `{split}-i-of-n` shards (an unfinished conversion: re-run it to finish).
  """
  pattern = _shard_glob(data_dir, split)
  if not tf.io.gfile.isdir(data_dir):
    raise MissingShardsError(
        f"data dir {data_dir!r} does not exist (looked for shards {pattern!r}); make one with "
        "scripts/make_tfrecords.py")
  paths = sorted(tf.io.gfile.glob(pattern))
  if not paths:
    raise MissingShardsError(
        f"no {split!r} shards in {data_dir!r}: nothing matches {pattern!r}")
  # Shard names carry their count: a missing one means the conversion did not finish.
  expected = set()
  for p in paths:
    try:
      n = int(os.path.basename(p).rsplit("-of-", 1)[1].split(".")[0])
    except ValueError:
      continue
    expected.update(shards.shard_name(split, i, n) for i in range(n))
  missing = sorted(expected - {os.path.basename(p) for p in paths})
  if missing:
    raise MissingShardsError(
        f"{data_dir!r} misses {len(missing)} {split!r} shard(s), e.g. {missing[:3]}: the "
        "conversion did not finish; re-run it to write the missing shards")
  return paths


def _crc32c_table():
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc32c_table()


def _masked_crc32c(data):
  crc = 0xFFFFFFFF
  for b in data:
    crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  crc ^= 0xFFFFFFFF
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_tfrecord(path):
  """Raises CorruptShardError naming `path` unless it starts like a TFRecord file.

  Reads only the first 12 bytes: the record length and its masked CRC-32C. An empty file is a
  valid TFRecord with no records. Corruption later in a file still surfaces as TF's DataLossError
  when that record is read.
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    header = f.read(12)
  if not header:
    return
  if len(header) < 12:
    raise CorruptShardError(f"{path} is not a TFRecord file (only {len(header)} bytes); "
                            "re-create it with scripts/make_tfrecords.py")
  (length,) = struct.unpack("<Q", header[:8])
  (crc,) = struct.unpack("<I", header[8:])
  if crc != _masked_crc32c(header[:8]):
    raise CorruptShardError(
        f"{path} is not a TFRecord file (the first record header's checksum does not match); "
        "re-create it with scripts/make_tfrecords.py")
  del length


def check_not_empty(data_dir, split, paths):
  """Raises EmptySplitError naming the split and directory when every shard is empty (0 bytes:
  a TFRecord file without records) or dataset.json counts 0 videos for the split."""
  meta_path = os.path.join(data_dir, shards.DATASET_JSON)
  count = None
  if tf.io.gfile.exists(meta_path):
    try:
      count = int(shards.load_dataset_json(data_dir)["splits"][split]["videos"])
    except (KeyError, TypeError, ValueError):
      count = None
  if count == 0 or all(tf.io.gfile.stat(p).length == 0 for p in paths):
    raise EmptySplitError(
        f"split {split!r} in {data_dir!r} has 0 videos ({len(paths)} empty shard(s)): every "
        "video of it failed to convert or none was found; convert videos into it with "
        "scripts/make_tfrecords.py (see dataset.json 'failures') or use another --data_dir")


def find_corrupt_shard(paths):
  """Reads every record of every file; returns (path, message) of the first damaged or
  unparsable one, or None. Slow (reads everything): only used after a read error."""
  for path in paths:
    try:
      for record in tf.data.TFRecordDataset(path):
        shards.parse_sequence_example(record)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
      return path, " ".join(str(e.message).split())[:200]
  return None


@contextlib.contextmanager
def naming_bad_shards(data_dir, *splits):
  """Turns a read error of TF (DataLossError `truncated record at N`, a parse error) raised
  inside the block into a CorruptShardError that names the damaged file of `splits`."""
  try:
    yield
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    if isinstance(e, tf.errors.InvalidArgumentError) and "parse" not in str(e).lower():
      raise
    bad = None
    for split in splits if data_dir else ():
      try:
        bad = find_corrupt_shard(list_shards(data_dir, split))
      except DataError:
        bad = None
      if bad:
        break
    if bad is None:
      raise
    raise CorruptShardError(
        f"{bad[0]} is damaged ({bad[1]}); re-create it with scripts/make_tfrecords.py "
        "(it was converted from the videos listed in dataset.json)") from None


def read_videos(data_dir, split, *, shuffle, seed, num_shards=1, shard_index=0, repeat=False,
                cycle_length=16, shuffle_buffer=256, check_files=True):
  """Reads a split as a tf.data.Dataset of parsed videos (`shards.parse_sequence_example` dicts).

  Example:
  >>> ds = read_videos("/data/ucf101_tfrecords", "train", shuffle=True, seed=0)
  >>> next(iter(ds))["frames"].shape       # [F] JPEG strings

  Args:
    data_dir: directory (or gs:// prefix) holding `{split}-*-of-*.tfrecord`.
    split: split name.
    shuffle: shuffle the file order (per epoch) and the videos (buffer `shuffle_buffer`).
    seed: int seed of both shuffles; reproducible order for a fixed seed.
    num_shards, shard_index: this input pipeline's part (one per host). Whole files are split
      between pipelines when there are at least as many files as pipelines; otherwise every
      pipeline reads all files and keeps every num_shards-th video, which needs the same `seed`
      in every pipeline so their orders agree.
    repeat: repeat forever (file order reshuffled each epoch).
    cycle_length: files read concurrently (interleaved one video at a time).
    shuffle_buffer: videos in the shuffle buffer (serialized, so about one video's JPEGs each).
    check_files: read each file's first record header up front to reject non-TFRecord files
      with a message naming them.

  Returns:
    tf.data.Dataset of dicts: frames, num_frames, label, video_index, height, width, media_id.
  """
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} not in [0, num_shards={num_shards})")
  paths = list_shards(data_dir, split)
  if check_files:
    # One small read per file; threads hide the latency of remote (gs://) files.
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
      list(pool.map(check_tfrecord, paths))
  check_not_empty(data_dir, split, paths)
  file_level = len(paths) >= num_shards
  if file_level:
    paths = paths[shard_index::num_shards]
  ds = tf.data.Dataset.from_tensor_slices(paths)
  if shuffle:
    ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.interleave(
      tf.data.TFRecordDataset, cycle_length=max(1, min(cycle_length, len(paths))),
      block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if not file_level and num_shards > 1:
    ds = ds.shard(num_shards, shard_index)
  if shuffle:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  # Parsing has no Python control flow: skipping AutoGraph makes building the pipeline faster.
  return ds.map(tf.autograph.experimental.do_not_convert(shards.parse_sequence_example),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
