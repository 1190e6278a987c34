"""Video shards: one `tf.train.SequenceExample` per video with MediaSequence keys.

The keys are the ones TF Model Garden's video readers use, so shards written here are
readable there and vice versa. We add `clip/index`, the video's position in its split, which
gives retrieval and evaluation a stable video id independent of read order.
"""

import json
import os

import tensorflow as tf

from ctp_tf.errors import DataError

MEDIA_ID = "clip/media_id"
LABEL_INDEX = "clip/label/index"
LABEL_STRING = "clip/label/string"
HEIGHT = "image/height"
WIDTH = "image/width"
NUM_FRAMES = "clip/frames"
FRAME_RATE = "image/frame_rate"
VIDEO_INDEX = "clip/index"
ENCODED = "image/encoded"

DATASET_JSON = "dataset.json"


def shard_name(split, index, num_shards):
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_pattern(data_dir, split):
  """The glob of every shard of `split` in `data_dir` (the names `shard_name` makes)."""
  return os.path.join(data_dir, f"{split}-*-of-*.tfrecord")


def _int64(v):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def _bytes(v):
  if isinstance(v, str):
    v = v.encode("utf-8")
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def make_sequence_example(jpegs, *, media_id, label_index, label_string, height, width,
                          frame_rate, index):
  """Builds the SequenceExample of one video from its JPEG-encoded frames."""
  context = tf.train.Features(feature={
      MEDIA_ID: _bytes(media_id),
      LABEL_INDEX: _int64(label_index),
      LABEL_STRING: _bytes(label_string),
      HEIGHT: _int64(height),
      WIDTH: _int64(width),
      NUM_FRAMES: _int64(len(jpegs)),
      FRAME_RATE: tf.train.Feature(float_list=tf.train.FloatList(value=[float(frame_rate)])),
      VIDEO_INDEX: _int64(index),
  })
  frames = tf.train.FeatureList(feature=[_bytes(j) for j in jpegs])
  return tf.train.SequenceExample(
      context=context, feature_lists=tf.train.FeatureLists(feature_list={ENCODED: frames}))


_CONTEXT_SPEC = {
    MEDIA_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
    LABEL_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    WIDTH: tf.io.FixedLenFeature([], tf.int64),
    VIDEO_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
}
_SEQUENCE_SPEC = {ENCODED: tf.io.FixedLenSequenceFeature([], tf.string)}


def parse_sequence_example(serialized):
  """Parses one serialized video; frames stay JPEG strings (decoded after sampling)."""
  context, sequence = tf.io.parse_single_sequence_example(
      serialized, context_features=_CONTEXT_SPEC, sequence_features=_SEQUENCE_SPEC)
  frames = sequence[ENCODED]
  return {
      "frames": frames,
      "num_frames": tf.shape(frames)[0],
      "label": tf.cast(context[LABEL_INDEX], tf.int32),
      "video_index": tf.cast(context[VIDEO_INDEX], tf.int32),
      "height": tf.cast(context[HEIGHT], tf.int32),
      "width": tf.cast(context[WIDTH], tf.int32),
      "media_id": context[MEDIA_ID],
  }


def write_tfrecord_atomic(path, serialized_records):
  """Writes records to a temporary name and renames, so no reader ever sees half a shard."""
  tmp = f"{path}.tmp-{os.getpid()}"
  count = 0
  with tf.io.TFRecordWriter(tmp) as writer:
    for record in serialized_records:
      writer.write(record)
      count += 1
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return count


def write_json_atomic(path, obj):
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(json.dumps(obj, indent=2, sort_keys=True))
  tf.io.gfile.rename(tmp, path, overwrite=True)


class MissingDatasetJson(DataError, FileNotFoundError):
  """A data dir without dataset.json."""


def load_dataset_json(data_dir):
  path = os.path.join(data_dir, DATASET_JSON)
  if not tf.io.gfile.exists(path):
    raise MissingDatasetJson(
        f"{path} not found: {data_dir!r} is not a converted dataset "
        "(make one with scripts/make_tfrecords.py)")
  try:
    with tf.io.gfile.GFile(path) as f:
      meta = json.load(f)
  except ValueError as e:
    raise DataError(f"{path} is damaged ({e}); re-run scripts/make_tfrecords.py to rewrite "
                    "it.") from None
  if not isinstance(meta, dict):
    raise DataError(f"{path} is not a dataset description (a JSON object).")
  return meta


def write_dataset_json(data_dir, obj):
  write_json_atomic(os.path.join(data_dir, DATASET_JSON), obj)
