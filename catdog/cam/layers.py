"""The CAM model's own Keras layer (loaded only where a CAM model is built)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="catdog")
class PriorInEveryCell(keras.layers.Layer):
    """[(N, G, G, 2) maps, (N, 1) value] -> maps + value * weights in every cell: the head's term for
    a per-photo feature (the ImageNet dog-vs-cat log-odds), which global average pooling leaves as
    it is. A multiply, a reshape and an add, which Core ML, TFLite and ONNX all convert."""

    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.prior_weights = [float(w) for w in weights]

    def call(self, inputs):
        maps, value = inputs
        term = value * keras.ops.convert_to_tensor(self.prior_weights, dtype=maps.dtype)
        return maps + keras.ops.reshape(term, (-1, 1, 1, len(self.prior_weights)))

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "weights": self.prior_weights}
