"""Action-recognition task model: backbone -> global average pool -> dropout -> linear."""

import keras

from ctp_tf.models.backbone_model import BackboneModel
from ctp_tf.layers.initializers import NumpyNormal


@keras.saving.register_keras_serializable(package="ctp_tf")
class VideoClassifier(BackboneModel, keras.Model):
  """Logits `[B, num_classes]` for clips `[B, T, H, W, 3]` (uint8 or 0..255 float when the
  backbone normalises its input).

  Average over time and space, dropout, one Dense layer initialised N(0, 0.001)
  (REFERENCE.md "Downstream"). Use a standard-stride backbone.

  Example:
  >>> import numpy as np
  >>> from ctp_tf.models import build_backbone
  >>> clf = VideoClassifier(build_backbone("r3d_10", width_multiplier=0.125), num_classes=5)
  >>> tuple(clf(np.zeros((2, 8, 32, 32, 3), "uint8")).shape)
  (2, 5)
  """

  def __init__(self, backbone, num_classes, dropout=0.5, name="video_classifier", **kwargs):
    inputs = keras.Input(shape=backbone.input_shape[1:], dtype=backbone.inputs[0].dtype,
                         name="clip")
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling3D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(
        num_classes, kernel_initializer=NumpyNormal(stddev=0.001),
        dtype="float32", name="logits")(x)
    super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
    self.backbone = backbone
    self.num_classes = int(num_classes)
    self.dropout = float(dropout)

  def get_config(self):
    return {"name": self.name, "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes, "dropout": self.dropout}
