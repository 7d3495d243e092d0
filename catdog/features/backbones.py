"""The ImageNet backbones catdog knows, and the raw-image models built on them.

Every model catdog builds takes the raw photo: RGB, 224 x 224 x 3, float values 0..255.
The backbone's own preprocessing is the first layer (`BackbonePreprocessing`), so exported
artefacts and apps never normalise pixels themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras

from catdog.data import IMAGE_SIZE
from catdog.errors import CatdogError

# Caffe-style ImageNet mean, in BGR order (what ResNet50's preprocess_input subtracts).
BGR_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class BackboneSpec:
    """What catdog needs to know about one Keras application backbone."""

    name: str
    constructor: str  # attribute of keras.applications
    preprocess_mode: str  # "caffe": RGB->BGR then minus BGR_MEAN; "tf": x / 127.5 - 1
    feature_dim: int  # channels C of the last conv block (7 x 7 x C)
    notop_weights_file: str  # file name Keras caches in $KERAS_HOME/models/


BACKBONES = {
    "resnet50": BackboneSpec(
        "resnet50", "ResNet50", "caffe", 2048, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", "MobileNetV2", "tf", 1280, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    ),
}


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise CatdogError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


@keras.saving.register_keras_serializable(package="catdog")
class BackbonePreprocessing(keras.layers.Layer):
    """A backbone's ImageNet preprocessing as a layer: raw RGB 0..255 in, network input out.

    mode "caffe" (ResNet50): flip RGB to BGR and subtract BGR_MEAN, no scaling.
    mode "tf" (MobileNetV2): x / 127.5 - 1, giving [-1, 1].
    Equal to `keras.applications.<backbone>.preprocess_input` on float input.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "caffe":
            return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(BGR_MEAN, dtype=x.dtype)
        return x / 127.5 - 1.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights: $KERAS_HOME/models, default ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def build_backbone(name: str, weights: str | os.PathLike | None = "imagenet") -> keras.Model:
    """The backbone without its top: (224, 224, 3) network input -> (7, 7, C) last conv block.

    weights: "imagenet" (Keras' cache in $KERAS_HOME/models, else downloaded as Keras does),
    a path to a no-top weights file, or None (random initialisation).
    """
    spec = get_spec(name)
    if weights not in ("imagenet", None):
        weights = Path(weights)
        if not weights.is_file():
            raise CatdogError(f"{weights}: weights file not found; pass the path of a {spec.name} no-top .h5 weights file")
        weights = str(weights)
    constructor = getattr(keras.applications, spec.constructor)
    try:
        return constructor(
            include_top=False, weights=weights, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="backbone"
        )
    except (OSError, ValueError) as exc:
        raise CatdogError(
            f"cannot load {spec.name} weights {weights!r} ({str(exc).splitlines()[0][:200]}); "
            f"for ImageNet weights connect to the internet or put {spec.notop_weights_file} in {keras_models_dir()}, "
            "or pass --weights PATH"
        ) from None
    except Exception as exc:  # Keras' get_file raises plain Exception when a download fails
        if "URL fetch failure" in str(exc) or "HTTP" in str(exc):
            raise CatdogError(
                f"cannot download {spec.name} ImageNet weights (no network?); put {spec.notop_weights_file} "
                f"in {keras_models_dir()} or pass --weights PATH"
            ) from None
        raise


def build_classifier(name: str, weights: str | os.PathLike = "imagenet") -> keras.Model:
    """The backbone WITH its ImageNet top, on the raw photo: (224, 224, 3) 0..255 -> (1000,) softmax.

    For data inspection (which photos ImageNet sees no cat or dog in). weights: "imagenet"
    (Keras' cache or download) or a path to a with-top weights file.
    """
    spec = get_spec(name)
    constructor = getattr(keras.applications, spec.constructor)
    top_file = spec.notop_weights_file.replace("_notop", "").replace("_no_top", "")
    try:
        net = constructor(include_top=True, weights=str(weights), input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    except Exception as exc:  # a failed download raises plain Exception in Keras' get_file
        raise CatdogError(
            f"cannot load {spec.name} ImageNet weights with top ({str(exc).splitlines()[0][:160]}); "
            f"put {top_file} in {keras_models_dir()} or connect to the internet"
        ) from None
    image = image_input()
    probabilities = net(BackbonePreprocessing(spec.preprocess_mode, name="preprocess")(image))
    return keras.Model(image, probabilities, name=f"{spec.name}_imagenet")


def image_input() -> keras.KerasTensor:
    """The raw-photo input every catdog model shares: RGB, 224 x 224 x 3, float 0..255."""
    return keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32", name="image")


def feature_model(name: str, backbone: keras.Model) -> keras.Model:
    """Raw RGB photo -> preprocessing -> backbone -> global average pooling -> (C,) features."""
    spec = get_spec(name)
    image = image_input()
    x = BackbonePreprocessing(spec.preprocess_mode, name="preprocess")(image)
    x = backbone(x)
    features = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, features, name=f"{spec.name}_features")
