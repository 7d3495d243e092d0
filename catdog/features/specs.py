"""The backbones catdog knows, as plain data: the CLI lists them without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneSpec:
    """What catdog needs to know about one Keras application backbone."""

    name: str
    constructor: str  # attribute of keras.applications
    preprocess_mode: str  # "caffe": RGB->BGR then minus BGR_MEAN; "tf": x / 127.5 - 1
    feature_dim: int  # channels C of the last conv block (7 x 7 x C)
    notop_weights_file: str  # file name Keras caches in $KERAS_HOME/models/ (the 224 one)
    weights_sizes: tuple[int, ...] = ()  # input sizes with ImageNet weights of their own (Keras loads the 224 ones at any other)

    def weights_file(self, image_size: int) -> str:
        """The no-top file Keras loads for ImageNet weights at `image_size` (MobileNets have
        files trained at some smaller sizes and pick them by the input size)."""
        rows = image_size if image_size in self.weights_sizes else 224
        return self.notop_weights_file.replace("_224_", f"_{rows}_")


BACKBONES = {
    "resnet50": BackboneSpec(
        "resnet50", "ResNet50", "caffe", 2048, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    ),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", "MobileNetV2", "tf", 1280, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        (96, 128, 160, 192, 224),
    ),
    # MobileNet V1 (alpha 1.0): no ImageNet top offline, so a feature backbone (and fusion partner) only
    "mobilenet": BackboneSpec("mobilenet", "MobileNet", "tf", 1024, "mobilenet_1_0_224_tf_no_top.h5", (128, 160, 192, 224)),
}
