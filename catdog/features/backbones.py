"""The ImageNet backbones catdog knows, and the raw-image models built on them.

Every model catdog builds takes the raw photo: RGB, S x S x 3, float values 0..255, where the
input size S is 224 by default (`--image-size`; a multiple of 32, so the last conv block is
S/32 x S/32: 7 x 7 at 224, 9 x 9 at 288).
The backbone's own preprocessing is the first layer (`BackbonePreprocessing`), so exported
artefacts and apps never normalise pixels themselves.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import keras

from catdog.data import IMAGE_SIZE
from catdog.errors import CatdogError
from catdog.features.specs import BACKBONES, BackboneSpec

# Caffe-style ImageNet mean, in BGR order (what ResNet50's preprocess_input subtracts).
BGR_MEAN = (103.939, 116.779, 123.68)


def backbone_names(name: str) -> list[str]:
    """The backbones of `name`: "mobilenet_v2" -> [it]; "mobilenet_v2,resnet50" -> both (fusion)."""
    parts = [p.strip() for p in str(name).split(",")]
    for part in parts:
        if part not in BACKBONES:
            raise CatdogError(f"unknown backbone {part!r}; choose one of {', '.join(BACKBONES)}, or several joined by commas")
    if len(set(parts)) != len(parts):
        raise CatdogError(f"backbone {name!r} names one backbone twice; list each once (e.g. mobilenet_v2,resnet50)")
    return parts


def get_spec(name: str) -> BackboneSpec:
    """The spec of one backbone, or of a fusion "a,b": its feature maps are a's and b's
    concatenated (C = Ca + Cb). Backbones that share one preprocessing (MobileNet V1 and V2:
    x / 127.5 - 1) keep it as the fusion's own, applied once before the branches, so Core ML
    can still take it as the image scale and bias; otherwise the fusion takes the raw photo
    ("raw") and each branch preprocesses inside it."""
    parts = backbone_names(name)
    if len(parts) == 1:
        return BACKBONES[parts[0]]
    specs = [BACKBONES[p] for p in parts]
    modes = {s.preprocess_mode for s in specs}
    return BackboneSpec(
        ",".join(parts),
        "",
        modes.pop() if len(modes) == 1 else "raw",
        sum(s.feature_dim for s in specs),
        " and ".join(s.notop_weights_file for s in specs),
    )


def split_weights(name: str, weights: str | os.PathLike | None) -> list:
    """One weights argument per backbone of `name`: "imagenet" or None apply to every backbone;
    a fusion takes a comma-separated list, one entry ("imagenet" or a path) per backbone."""
    parts = backbone_names(name)
    if weights in ("imagenet", None):
        return [weights] * len(parts)
    items = str(weights).split(",") if len(parts) > 1 else [weights]
    if len(items) != len(parts):
        raise CatdogError(
            f"--weights {weights}: {name} fuses {len(parts)} backbones; give one entry per backbone, "
            "comma-separated (e.g. imagenet,resnet50_notop.h5)"
        )
    return items


@keras.saving.register_keras_serializable(package="catdog")
class BackbonePreprocessing(keras.layers.Layer):
    """A backbone's ImageNet preprocessing as a layer: raw RGB 0..255 in, network input out.

    mode "caffe" (ResNet50): flip RGB to BGR and subtract BGR_MEAN, no scaling.
    mode "tf" (MobileNet V1 and V2, and their fusion): x / 127.5 - 1, giving [-1, 1].
    mode "raw" (a fusion of backbones that preprocess differently): unchanged; each branch
    preprocesses inside the backbone.
    Equal to `keras.applications.<backbone>.preprocess_input` on float input.
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "raw"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "caffe":
            return keras.ops.flip(x, axis=-1) - keras.ops.convert_to_tensor(BGR_MEAN, dtype=x.dtype)
        if self.mode == "raw":
            return x
        return x / 127.5 - 1.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def keras_models_dir() -> Path:
    """Where Keras caches downloaded weights: $KERAS_HOME/models, default ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def check_image_size(image_size: int) -> int:
    """`image_size` as an int, or CatdogError unless it is a multiple of 32 between 96 and 1024."""
    if int(image_size) != image_size or not 96 <= image_size <= 1024 or image_size % 32:
        raise CatdogError(f"--image-size {image_size}: must be a multiple of 32 from 96 to 1024 (e.g. 224 or 288)")
    return int(image_size)


def input_size(model: keras.Model) -> int:
    """The photo size S a catdog model takes (its input is S x S x 3)."""
    return int(model.input.shape[1])


def build_backbone(
    name: str, weights: str | os.PathLike | None = "imagenet", image_size: int = IMAGE_SIZE, layer_name: str = "backbone"
) -> keras.Model:
    """The backbone without its top: (S, S, 3) network input -> (S/32, S/32, C) last conv block.

    ImageNet weights are size-independent (fully convolutional); MobileNet V1 and V2 load their
    224 weights at any other size, as Keras does. A fusion "a,b" (see `fused_backbone`) returns
    the concatenated maps.

    weights: "imagenet" (Keras' cache in $KERAS_HOME/models, else downloaded as Keras does),
    a path to a no-top weights file, or None (random initialisation).
    """
    if len(backbone_names(name)) > 1:
        return fused_backbone(name, weights, image_size, layer_name)
    spec = get_spec(name)
    size = check_image_size(image_size)
    if weights not in ("imagenet", None):
        weights = Path(weights)
        if not weights.is_file():
            raise CatdogError(f"{weights}: weights file not found; pass the path of a {spec.name} no-top .h5 weights file")
        weights = str(weights)
    constructor = getattr(keras.applications, spec.constructor)
    try:
        with warnings.catch_warnings():  # at S != 224 Keras says it loads the 224 weights: intended
            warnings.filterwarnings("ignore", message="`input_shape` is undefined or non-square")
            # the input named, or Keras numbers it on per process (input_layer_N) and a second model
            # saves other bytes; rebuilt on the same layers so the input is one tensor, not a list
            image = keras.Input(shape=(size, size, 3), name=f"{layer_name}_input")
            net = constructor(include_top=False, weights=weights, input_shape=(size, size, 3), input_tensor=image, name=layer_name)
            return keras.Model(image, net.output, name=layer_name)
    except (OSError, ValueError) as exc:
        raise CatdogError(
            f"cannot load {spec.name} weights {weights!r} ({str(exc).splitlines()[0][:200]}); "
            f"for ImageNet weights connect to the internet or put {spec.weights_file(size)} in {keras_models_dir()}, "
            "or pass --weights PATH"
        ) from None
    except Exception as exc:  # Keras' get_file raises plain Exception when a download fails
        if _download_failed(exc):
            raise CatdogError(
                f"cannot download {spec.name} ImageNet weights at {size}px (no network?); put {spec.weights_file(size)} "
                f"in {keras_models_dir()} or pass --weights PATH"
            ) from None
        raise


def _download_failed(exc: Exception) -> bool:
    """Whether Keras' get_file failed to download (it raises a plain Exception naming the URL)."""
    return "URL fetch failure" in str(exc) or "HTTP" in str(exc)


def fused_backbone(
    name: str, weights: str | os.PathLike | None = "imagenet", image_size: int = IMAGE_SIZE, layer_name: str = "backbone"
) -> keras.Model:
    """Each backbone's last conv block on one photo, concatenated: (S, S, 3) -> (S/32, S/32, Ca + Cb).

    Its input is the photo after the fusion's preprocessing (`get_spec(name).preprocess_mode`):
    preprocessed once when every backbone preprocesses alike (MobileNet V1 + V2), else the raw
    photo (0..255), each branch then preprocessing inside. Every backbone has stride 32, so their
    maps share one (S/32, S/32) grid and GAP of the concatenation is the concatenation of their
    GAP features: the CAM construction holds as is.
    """
    parts = backbone_names(name)
    shared = get_spec(name).preprocess_mode != "raw"
    image = keras.Input(shape=(image_size, image_size, 3), name="preprocessed_image" if shared else "raw_image")
    maps = []
    for part, part_weights in zip(parts, split_weights(name, weights)):
        x = image if shared else BackbonePreprocessing(BACKBONES[part].preprocess_mode, name=f"preprocess_{part}")(image)
        maps.append(build_backbone(part, part_weights, image_size, layer_name=part)(x))
    return keras.Model(image, keras.layers.Concatenate(name="fused_maps")(maps), name=layer_name)


def build_classifier(name: str, weights: str | os.PathLike = "imagenet") -> keras.Model:
    """The backbone WITH its ImageNet top, on the raw photo: (224, 224, 3) 0..255 -> (1000,) softmax.

    For data inspection (which photos ImageNet sees no cat or dog in). weights: "imagenet"
    (Keras' cache or download) or a path to a with-top weights file.
    """
    parts = backbone_names(name)
    if len(parts) > 1:
        raise CatdogError(f"backbone {name!r}: an ImageNet classifier is one backbone with its top, not a fusion; give one of {', '.join(parts)}")
    spec = get_spec(name)
    constructor = getattr(keras.applications, spec.constructor)
    top_file = spec.notop_weights_file.replace("_notop", "").replace("_no_top", "")
    try:
        net = constructor(include_top=True, weights=str(weights), input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    except Exception as exc:  # a failed download raises plain Exception in Keras' get_file
        # the download's reason is a long URL and the resolver's words, once cut mid-word: as the no-top weights say it
        reason = "no network?" if _download_failed(exc) else str(exc).splitlines()[0][:200]
        raise CatdogError(
            f"cannot load {spec.name} ImageNet weights with top ({reason}); put {top_file} in {keras_models_dir()} or connect to the internet"
        ) from None
    image = image_input()
    probabilities = net(BackbonePreprocessing(spec.preprocess_mode, name="preprocess")(image))
    return keras.Model(image, probabilities, name=f"{spec.name}_imagenet")


def image_input(image_size: int = IMAGE_SIZE) -> keras.KerasTensor:
    """The raw-photo input every catdog model shares: RGB, S x S x 3, float 0..255."""
    return keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")


def feature_model(name: str, backbone: keras.Model) -> keras.Model:
    """Raw RGB photo -> preprocessing -> backbone -> global average pooling -> (C,) features."""
    spec = get_spec(name)
    image = image_input(input_size(backbone))
    x = BackbonePreprocessing(spec.preprocess_mode, name="preprocess")(image)
    x = backbone(x)
    features = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(image, features, name=f"{spec.name.replace(',', '__')}_features")
