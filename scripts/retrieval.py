"""Video retrieval with a frozen encoder: test videos query the training videos (top-k).

  python scripts/retrieval.py --model=runs/pretrain/export --data_dir=data/ucf101 \
    --output=runs/retrieval_ctp.json --features_cache=runs/retrieval_ctp.npz
  python scripts/retrieval.py --model=random --data_dir=data/ucf101   # random-init baseline

Prints a table and writes `{"top1": .., "top5": .., "top10": .., "top20": .., "top50": ..}`
(fractions) to --output. Clip length and crop come from the export's config.json.
"""

import os
import tempfile

from absl import app, flags

from ctp_tf import cli

flags.DEFINE_string("model", None, "Encoder export directory, or `random` for a randomly "
                    "initialised encoder of --arch.", required=True)
flags.DEFINE_string("data_dir", None, "Converted shards with train and test splits.",
                    required=True)
flags.DEFINE_list("topk", ["1", "5", "10", "20", "50"], "k values to report.")
flags.DEFINE_string("output", None, "JSON result path.")
flags.DEFINE_string("features_cache", None, "Per-video features .npz, reused when its "
                    "settings match (model, clips, data).")
flags.DEFINE_integer("num_clips", 10, "Clips per video (uniformly spread).", lower_bound=1)
flags.DEFINE_integer("stride", 1, "Frame stride inside a clip (VCOP protocol: consecutive).",
                     lower_bound=1)
flags.DEFINE_list("resize", ["171", "128"], "Test resize (width, height) before the centre crop.")
flags.DEFINE_integer("batch_size", 8, "Videos per feature-extraction batch.", lower_bound=1)
flags.DEFINE_string("train_split", "train", "Gallery split.")
flags.DEFINE_string("test_split", "test", "Query split.")
flags.DEFINE_string("arch", "r3d_18", "Architecture for --model=random (an export's own arch "
                    "is checked against this only when --check_arch is set).")
flags.DEFINE_bool("check_arch", False, "Fail if the export's arch differs from --arch.")
flags.DEFINE_float("width_multiplier", 1.0, "Width for --model=random.")
flags.DEFINE_list("clip_shape", ["16", "112", "112"], "T,H,W for --model=random.")
flags.DEFINE_integer("seed", 0, "Initialisation seed for --model=random.")
flags.DEFINE_string("like", None, "For --model=random: take arch, width and clip shape from "
                    "this export's config.json (the baseline for that export).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ctp_tf import fileio
  from ctp_tf.downstream import export, retrieval

  ks = cli.int_list("topk", FLAGS.topk)
  resize = cli.int_list("resize", FLAGS.resize, count=2)
  with tempfile.TemporaryDirectory() as tmp:
    if FLAGS.model == "random":
      arch, width = FLAGS.arch, FLAGS.width_multiplier
      clip_shape = cli.int_list("clip_shape", FLAGS.clip_shape, count=3)
      if FLAGS.like:
        try:
          like = export.read_export_config(FLAGS.like)
        except export.ExportError as e:
          raise app.UsageError(f"--like: {e}")
        arch, width, clip_shape = like["arch"], like["width_multiplier"], like["clip_shape"]
      model_dir = os.path.join(tmp, "random_export")
      retrieval.random_encoder_export(model_dir, arch=arch, width_multiplier=width,
                                      clip_shape=tuple(clip_shape), seed=FLAGS.seed)
      cache_key = f"random:{arch}:{width}:{FLAGS.seed}"
    else:
      model_dir = FLAGS.model
      cache_key = f"export:{os.path.abspath(model_dir)}:" + str(
          os.path.getmtime(os.path.join(model_dir, export.WEIGHTS_NAME))
          if os.path.exists(os.path.join(model_dir, export.WEIGHTS_NAME)) else "")
    try:
      serve, cfg = export.load_serving(model_dir, arch=FLAGS.arch if FLAGS.check_arch else None)
    except export.ExportError as e:
      raise app.UsageError(f"--model: {e}")
    result = retrieval.run_retrieval(
        serve, cfg, FLAGS.data_dir, ks=ks, num_clips=FLAGS.num_clips, stride=FLAGS.stride,
        resize=resize, train_split=FLAGS.train_split,
        test_split=FLAGS.test_split, batch_size=FLAGS.batch_size,
        features_cache=FLAGS.features_cache, cache_key=cache_key)
  print(f"retrieval ({FLAGS.model}, {result['num_queries']} queries, "
        f"{result['num_gallery']} gallery videos), top-k %:")
  print(retrieval.format_table({f"top{k}": result[f"top{k}"] for k in ks}))
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    fileio.write_json_atomic(FLAGS.output, result)


if __name__ == "__main__":
  cli.run(main)
