"""get_config -> from_config round trip of the models built around a backbone (the one
`BackboneModel.from_config` they share)."""

from ctp_tf import models
from ctp_tf.models.backbone_model import BackboneModel


def test_classifier_and_features_round_trip_through_config():
  backbone = models.build_backbone("r3d_10", "standard", width_multiplier=0.0625)
  for model in (models.VideoClassifier(backbone, 5, dropout=0.25),
                models.FeatureExtractor(backbone)):
    assert isinstance(model, BackboneModel)
    config = model.get_config()
    again = type(model).from_config(config)
    assert type(again) is type(model)
    assert again.backbone is not backbone                 # rebuilt from its own config
    assert again.backbone.get_config() == backbone.get_config()
    assert again.get_config() == config


def test_functional_and_subclassed_backbone_models_coexist():
  # Building a functional-style one (FeatureExtractor) first must not turn the shared base of
  # the subclassed ones (CtPModel) into a Functional model.
  from ctp_tf import defaults
  cfg = defaults.ctp_model_config()
  cfg.arch, cfg.width_multiplier = "r3d_10", 0.0625
  models.FeatureExtractor(models.build_backbone("r3d_10", width_multiplier=0.0625))
  ctp = models.build_ctp_model(cfg, clip_shape=(8, 32, 32), num_boxes=2)
  assert isinstance(ctp, BackboneModel)
  assert type(ctp).from_config(ctp.get_config()).get_config() == ctp.get_config()
