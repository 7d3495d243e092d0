"""The CAM model's own Keras layer (loaded only where a CAM model is built)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="catdog")
class EveryCell(keras.layers.Layer):
    """(N, 1) -> (N, G, G, 1): one value per photo, repeated over a G x G grid (a tile, which
    Core ML, TFLite and ONNX all convert)."""

    def __init__(self, grid: int, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)

    def call(self, x):
        return keras.ops.tile(keras.ops.reshape(x, (-1, 1, 1, 1)), (1, self.grid, self.grid, 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.grid, self.grid, 1)

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}
