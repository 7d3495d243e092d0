"""Stage 2, features: Keras ImageNet backbones (include_top=False, GAP), cached in h5."""

from catdog.features.backbones import (
    BACKBONES,
    BGR_MEAN,
    BackbonePreprocessing,
    BackboneSpec,
    backbone_names,
    build_backbone,
    build_classifier,
    check_image_size,
    feature_model,
    get_spec,
    image_input,
    input_size,
    keras_models_dir,
    split_weights,
)
from catdog.features.cache import ExtractReport, FeatureSet, extract_features, load_features, weights_id, without

__all__ = [
    "BACKBONES",
    "BGR_MEAN",
    "BackbonePreprocessing",
    "BackboneSpec",
    "ExtractReport",
    "FeatureSet",
    "backbone_names",
    "build_backbone",
    "build_classifier",
    "check_image_size",
    "extract_features",
    "feature_model",
    "get_spec",
    "image_input",
    "input_size",
    "keras_models_dir",
    "load_features",
    "split_weights",
    "weights_id",
    "without",
]
