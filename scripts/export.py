"""Exports the encoder of a pretraining workdir (latest checkpoint + config.json).

  python scripts/export.py --workdir=runs/pretrain --export_dir=runs/pretrain/export

The export is a SavedModel (`serving_default`: uint8 `clips` [N, T, H, W, 3] -> `features`,
`retrieval_features`) that plain `tf.saved_model.load` opens, plus `config.json` and
`encoder.weights.h5` for finetuning (`scripts/finetune.py --init_from=...`).
"""

import os

from absl import app, flags

from ctp_tf import cli

flags.DEFINE_string("workdir", None, "Pretraining workdir (config.json + checkpoints).",
                    required=True)
flags.DEFINE_string("export_dir", None, "Output directory (default WORKDIR/export).")
flags.DEFINE_string("checkpoint", None, "A specific weights file (default: the newest "
                    "checkpoint or backup in the workdir).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from ctp_tf.downstream import export

  export_dir = FLAGS.export_dir or os.path.join(FLAGS.workdir, "export")
  try:
    cfg = export.export_from_workdir(FLAGS.workdir, export_dir, checkpoint=FLAGS.checkpoint)
  except (FileNotFoundError, export.ExportError) as e:
    raise app.UsageError(str(e))
  print(f"exported {cfg['arch']} (width {cfg['width_multiplier']}, clips "
        f"{'x'.join(map(str, cfg['clip_shape']))}) from {cfg['source']} to {export_dir}")


if __name__ == "__main__":
  cli.run(main)
