#!/usr/bin/env python
"""Renders synthesised CtP clips with their ground-truth boxes to a PNG grid and a GIF.

Solid boxes: frames where the patch is pasted; dashed: frames where it is hidden (masked region
model) but still supervised. One colour per trajectory.

  python scripts/visualize_trajectories.py                     # demo data, demo config
  python scripts/visualize_trajectories.py --data_dir=shards/ucf101 \\
      --config=configs/ucf101_r3d18.py --out=traj.png --gif=traj.gif --num_clips=4 \\
      --config.synthesis.speed=5 --config.synthesis.visible_prob=1.0
"""

import sys

from absl import app, flags

from ctp_tf import cli
from ctp_tf.training import config_utils
from ml_collections import config_flags

DEFAULT_CONFIG = config_utils.find_config("demo")

if __name__ == "__main__":
  cli.check_config_argv(DEFAULT_CONFIG)   # before the flag parses sys.argv

_CONFIG = config_flags.DEFINE_config_file(
    "config", DEFAULT_CONFIG, "Pretraining config file (configs/*.py); its data, synthesis "
    "and augment fields are used. Override with --config.synthesis.speed=5 etc.",
    lock_config=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Converted shards; default: the demo data "
                                "(made on first use).")
_DEMO_DIR = flags.DEFINE_string("demo_dir", None, "Cache for the demo data.")
_SPLIT = flags.DEFINE_string("split", None, "Split to read (default config.data.split).")
_OUT = flags.DEFINE_string("out", "trajectories.png", "PNG grid to write.")
_GIF = flags.DEFINE_string("gif", "", "Animated GIF to write (empty: none).")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 3, "Clips to render.", lower_bound=1)
_FRAMES = flags.DEFINE_integer("max_frames", 8, "Frames per row of the PNG.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the video order and the synthesis.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from ctp_tf import plots  # noqa: PLC0415  (imports TensorFlow lazily)
  config = _CONFIG.value
  data_dir = _DATA_DIR.value
  if not data_dir:
    from ctp_tf.demo import assets as demo_assets  # noqa: PLC0415
    data_dir = demo_assets.ensure_demo_data(_DEMO_DIR.value)
  try:
    ex = plots.synthesised_examples(data_dir, config, num_clips=_NUM_CLIPS.value,
                                    seed=_SEED.value, split=_SPLIT.value)
  except (FileNotFoundError, ValueError) as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(2)
  print(plots.plot_trajectory_grid(ex["clip"], ex["boxes"], ex["visible"], _OUT.value,
                                   max_frames=_FRAMES.value))
  if _GIF.value:
    print(plots.save_trajectory_gif(ex["clip"], ex["boxes"], ex["visible"], _GIF.value))


if __name__ == "__main__":
  cli.run(main, config_default=DEFAULT_CONFIG)
