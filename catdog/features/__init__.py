"""Stage 2, features: Keras ImageNet backbones (include_top=False, GAP), cached in h5.

Names are imported on first use (catdog.lazy): the CLI lists BACKBONES without Keras.
"""

from catdog.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "catdog.features.backbones": [
            "BGR_MEAN",
            "BackbonePreprocessing",
            "backbone_names",
            "build_backbone",
            "build_classifier",
            "check_image_size",
            "feature_model",
            "get_spec",
            "image_input",
            "input_size",
            "keras_models_dir",
            "split_weights",
        ],
        "catdog.features.cache": ["ExtractReport", "FeatureSet", "extract_features", "finished", "load_features", "view_path", "weights_id", "without"],
        "catdog.features.specs": ["BACKBONES", "BackboneSpec"],
        "catdog.features.stage": ["Extraction", "features_stage"],
    },
)
