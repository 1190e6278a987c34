"""CtP pretraining of R(2+1)D-18 on UCF-101: as `ucf101_r3d18` with the (2+1)D backbone."""

import os

from ctp_tf.training import config_utils


def get_config():
  c = config_utils.load_config_file(os.path.join(os.path.dirname(__file__), "ucf101_r3d18.py"))
  c.model.arch = "r2plus1d_18"
  return c
