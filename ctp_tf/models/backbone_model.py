"""What every model built around a `backbone` sub-model shares: its Keras deserialisation.

`CtPModel`, `VideoClassifier` and `FeatureExtractor` store the backbone's serialised config
under `"backbone"` in `get_config()`; `BackboneModel.from_config` rebuilds it first.
"""

import keras


class BackboneModel:
  """Mixin (before keras.Model) for models whose config holds a serialised `backbone` model.

  Not a keras.Model subclass itself: Keras rewrites the bases of functional-style subclasses
  (FeatureExtractor) at construction, which must not reach the subclassed ones (CtPModel).
  """

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    backbone = keras.saving.deserialize_keras_object(config.pop("backbone"),
                                                     custom_objects=custom_objects)
    return cls(backbone=backbone, **config)
