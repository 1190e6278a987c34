"""Clip features for retrieval: pooled 512-d features and 2x3x3 adaptive-pooled maps."""

import keras

from ctp_tf.models.backbone_model import BackboneModel
from ctp_tf.layers.pooling import AdaptiveAveragePooling3D

RETRIEVAL_GRID = (2, 3, 3)


@keras.saving.register_keras_serializable(package="ctp_tf")
class FeatureExtractor(BackboneModel, keras.Model):
  """`{"features": [B, C], "retrieval_features": [B, 2*3*3*C]}` from a backbone.

  `retrieval_features` are the backbone maps average-pooled to (2, 3, 3) with PyTorch's
  adaptive bins, flattened in channels-last **(t, h, w, c)** order (C fastest). PyTorch code
  flattening NCTHW maps gives (c, t, h, w) order instead: the same numbers permuted, which
  changes nothing for cosine-similarity retrieval; permute before comparing element-wise.
  The backbone's T, H, W at the output must be static (set `input_shape` on the backbone or
  give `clip_shape`).

  Example:
  >>> import numpy as np
  >>> from ctp_tf.models import build_backbone
  >>> fx = FeatureExtractor(build_backbone("r3d_10", width_multiplier=0.125,
  ...                                      input_shape=(16, 112, 112, 3)))
  >>> out = fx(np.zeros((1, 16, 112, 112, 3), "uint8"))
  >>> tuple(out["features"].shape), tuple(out["retrieval_features"].shape)
  ((1, 64), (1, 1152))
  """

  def __init__(self, backbone, clip_shape=None, name="feature_extractor", **kwargs):
    shape = tuple(clip_shape) + (3,) if clip_shape else tuple(backbone.input_shape[1:])
    inputs = keras.Input(shape=shape, dtype=backbone.inputs[0].dtype, name="clip")
    maps = backbone(inputs)
    features = keras.layers.GlobalAveragePooling3D(name="features")(maps)
    grid = AdaptiveAveragePooling3D(RETRIEVAL_GRID, name="retrieval_pool")(maps)
    retrieval = keras.layers.Flatten(name="retrieval_features")(grid)
    super().__init__(inputs=inputs, outputs={"features": features,
                                             "retrieval_features": retrieval},
                     name=name, **kwargs)
    self.backbone = backbone
    self.clip_shape = tuple(clip_shape) if clip_shape else None

  def get_config(self):
    return {"name": self.name, "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "clip_shape": list(self.clip_shape) if self.clip_shape else None}
