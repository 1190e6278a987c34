"""Backend-agnostic Keras layers (keras.ops only; importable without TensorFlow)."""

from ctp_tf.layers.initializers import NumpyNormal
from ctp_tf.layers.normalization import Normalize
from ctp_tf.layers.pooling import AdaptiveAveragePooling3D
from ctp_tf.layers.roi_align import ROIAlign

__all__ = ["NumpyNormal", "Normalize", "AdaptiveAveragePooling3D", "ROIAlign"]
