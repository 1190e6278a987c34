"""Backend-agnostic Keras models (keras.ops only; importable without TensorFlow)."""

from ctp_tf.models.classifier import VideoClassifier
from ctp_tf.models.ctp import (CtPModel, box_iou, build_ctp_model, ctp_losses, ctp_targets,
                               decode_boxes, smooth_l1)
from ctp_tf.models.features import FeatureExtractor
from ctp_tf.models.resnet3d import (ARCHS, ResNet3DBackbone, build_backbone,
                                    r2plus1d_mid_channels, standard_backbone_like)
from ctp_tf.models.torch_import import from_torch

__all__ = [
    "ARCHS", "CtPModel", "FeatureExtractor", "ResNet3DBackbone", "VideoClassifier", "box_iou",
    "build_backbone", "build_ctp_model", "ctp_losses", "ctp_targets", "decode_boxes",
    "from_torch", "r2plus1d_mid_channels", "smooth_l1", "standard_backbone_like",
]
