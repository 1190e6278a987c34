"""Backbone structure: presets, strides, widths, the (2+1)D rule, serialisation."""

import keras
import numpy as np
import pytest

from ctp_tf.models import (ResNet3DBackbone, build_backbone, r2plus1d_mid_channels,
                           standard_backbone_like)


def test_full_size_parameter_counts_match_torchvision():
  # torchvision r3d_18 / r2plus1d_18 without fc: 33,175,872 / 31,325,475 parameters.
  assert build_backbone("r3d_18").count_params() == 33175872
  assert build_backbone("r2plus1d_18", r2plus1d_mid_rule="block").count_params() == 31325475


def test_mid_channel_rule_and_width_multiplier():
  assert r2plus1d_mid_channels(64, 64) == 144
  assert r2plus1d_mid_channels(64, 128) == 230
  assert r2plus1d_mid_channels(128, 128) == 288
  b = build_backbone("r2plus1d_18", width_multiplier=0.125)
  assert b.get_layer("stem_conv_s").filters == 6                 # round(45 / 8)
  assert b.get_layer("stem_conv_t").filters == 8
  assert b.get_layer("stage2_block1_conv1_s").filters == r2plus1d_mid_channels(8, 16)
  assert b.get_layer("stage2_block1_conv2_s").filters == r2plus1d_mid_channels(16, 16)
  blockwise = build_backbone("r2plus1d_18", width_multiplier=0.125, r2plus1d_mid_rule="block")
  assert blockwise.get_layer("stage2_block1_conv2_s").filters == r2plus1d_mid_channels(8, 16)
  widths = [b.get_layer(f"stage{s}_block1_conv1_t").filters for s in range(1, 5)]
  assert widths == [8, 16, 32, 64] and b.num_features == 64


@pytest.mark.parametrize("arch,preset,stride,expected,total", [
    ("r3d_18", "pretrain", 8, (2, 2, 4, 4, 64), 8),
    ("r3d_18", "pretrain", 16, (2, 2, 2, 2, 64), 16),
    ("r2plus1d_10", "standard", 8, (2, 2, 2, 2, 64), 16),
    ("r3d_34", "pretrain", 8, (2, 2, 4, 4, 64), 8),
])
def test_presets_output_shapes(arch, preset, stride, expected, total):
  b = build_backbone(arch, preset, backbone_stride=stride, width_multiplier=0.125)
  y = b.predict(np.zeros((2, 16, 32, 32, 3), np.uint8), verbose=0)
  assert y.shape == expected
  assert b.spatial_stride == total
  assert b.temporal_stride == 8


def test_depths_have_the_right_number_of_blocks():
  for depth, blocks in ((10, 4), (18, 8), (34, 16)):
    b = build_backbone(f"r3d_{depth}", width_multiplier=0.125)
    names = {layer.name for layer in b.layers}
    assert sum(1 for n in names if n.endswith("_add")) == blocks
  assert "stage2_block1_downsample_conv" in names and "stage1_block1_downsample_conv" not in names


def test_strided_convs_pad_symmetrically_like_pytorch():
  b = build_backbone("r3d_10", width_multiplier=0.125, bn_epsilon=1e-5, synchronized_bn=True)
  pad = b.get_layer("stage2_block1_conv1_pad")
  assert pad.padding == ((1, 1), (1, 1), (1, 1))
  assert b.get_layer("stage2_block1_conv1").padding == "valid"
  assert b.get_layer("stem_conv_pad").padding == ((1, 1), (3, 3), (3, 3))
  bn = b.get_layer("stem_bn")
  assert bn.epsilon == 1e-5 and bn.synchronized and bn.momentum == pytest.approx(0.9)
  # One stride-2 conv on an impulse, checked by hand: symmetric padding puts the output's
  # sample centres on even input indices, so an impulse at (2, 2) lands on output (1, 1).
  conv = keras.Sequential([keras.layers.ZeroPadding2D(1), keras.layers.Conv2D(
      1, 3, strides=2, use_bias=False, kernel_initializer="ones")])
  x = np.zeros((1, 6, 6, 1), np.float32)
  x[0, 2, 2] = 1
  y = np.asarray(conv(x))[0, :, :, 0]
  assert y[1, 1] == 1 and y.sum() == 1


def test_stem_max_pool_and_normalize_input():
  b = build_backbone("r3d_10", width_multiplier=0.125, stem_max_pool=True,
                     stem_temporal_stride=2, stem_temporal_kernel=5)
  assert b.spatial_stride == 32 and b.temporal_stride == 16
  assert b.get_layer("stem_conv").kernel.shape[:3] == (5, 7, 7)
  x = np.random.default_rng(0).integers(0, 255, (1, 16, 64, 64, 3)).astype(np.uint8)
  np.testing.assert_allclose(b.predict(x, verbose=0), b.predict(x.astype(np.float32),
                                                                verbose=0), atol=1e-5)
  raw = build_backbone("r3d_10", width_multiplier=0.125, normalize_input=False)
  assert "normalize" not in {layer.name for layer in raw.layers}


def test_keras_round_trip_and_standard_backbone_like(tmp_path):
  b = build_backbone("r2plus1d_10", "pretrain", width_multiplier=0.125, bn_epsilon=1e-5)
  x = np.random.default_rng(1).integers(0, 255, (1, 16, 32, 32, 3)).astype(np.uint8)
  y = b.predict(x, verbose=0)
  path = str(tmp_path / "b.keras")
  b.save(path)
  again = keras.models.load_model(path)
  assert isinstance(again, ResNet3DBackbone) and again.get_config() == b.get_config()
  np.testing.assert_allclose(again.predict(x, verbose=0), y, atol=1e-5)
  std = standard_backbone_like(b)
  assert std.spatial_strides == (1, 2, 2, 2) and std.bn_epsilon == 1e-5
  for w0, w1 in zip(b.get_weights(), std.get_weights()):
    np.testing.assert_array_equal(w0, w1)
  assert std.predict(x, verbose=0).shape == (1, 2, 2, 2, 64)


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="arch"):
    build_backbone("r3d_50")
  with pytest.raises(ValueError, match="backbone_stride"):
    build_backbone("r3d_18", "pretrain", backbone_stride=4)
  with pytest.raises(ValueError, match="block_type"):
    ResNet3DBackbone("r4d")
