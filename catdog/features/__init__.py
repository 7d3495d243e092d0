"""Stage 2, features: Keras ImageNet backbones (include_top=False, GAP), cached in h5."""

from catdog.features.backbones import (
    BACKBONES,
    BGR_MEAN,
    BackbonePreprocessing,
    BackboneSpec,
    build_backbone,
    build_classifier,
    feature_model,
    get_spec,
    image_input,
    keras_models_dir,
)
from catdog.features.cache import ExtractReport, FeatureSet, extract_features, load_features, weights_id, without

__all__ = [
    "BACKBONES",
    "BGR_MEAN",
    "BackbonePreprocessing",
    "BackboneSpec",
    "ExtractReport",
    "FeatureSet",
    "build_backbone",
    "build_classifier",
    "extract_features",
    "feature_model",
    "get_spec",
    "image_input",
    "keras_models_dir",
    "load_features",
    "weights_id",
    "without",
]
