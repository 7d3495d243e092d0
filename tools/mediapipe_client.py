"""Run MediaPipe Tasks on catdog .tflite files: executed by tests/test_mediapipe.py with the isolated
MediaPipe venv's Python (never the project's: it cannot import catdog, TF or OpenCV-headless).

    python mediapipe_client.py REQUEST.json RESULT.json

REQUEST: {"models": [paths], "arrays": path of an (N, S, S, 3) uint8 .npy or null, "photos": [paths]}
RESULT: {"mediapipe_version", "schema_sha256" (of the wheel's metadata_schema_py_generated.py),
         "models": {path: {"arrays": [heads per image], "photos": [heads per photo],
                           "metadata_json": MetadataDisplayer's JSON, "packed": {name: text}}}}
where heads = [{"index", "name", "scores": [score by category index], "labels": [name by index]}].
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np


def _displayer_module():
    """MediaPipe's metadata module. The 1.2.3 wheel lacks the compiled module it imports at the
    top (`_pywrap_metadata_version`), which only MetadataPopulator calls; an empty stand-in lets
    MetadataDisplayer (pure Python + the wheel's own flatbuffers parser) load."""
    for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python",
                 "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"):
        sys.modules.setdefault(name, types.ModuleType(name))
    from mediapipe.tasks.python.metadata import metadata

    return metadata


def _heads(result) -> list[dict]:
    heads = []
    for head in result.classifications:
        n = max(c.index for c in head.categories) + 1
        scores, labels = [0.0] * n, [None] * n
        for c in head.categories:
            scores[c.index], labels[c.index] = float(c.score), c.category_name
        heads.append({"index": head.head_index, "name": head.head_name, "scores": scores, "labels": labels})
    return heads


def main(request_path: str, result_path: str) -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

    request = json.loads(Path(request_path).read_text())
    arrays = np.load(request["arrays"]) if request.get("arrays") else np.zeros((0, 1, 1, 3), np.uint8)
    images = [mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(a)) for a in arrays]
    photos = [mp.Image.create_from_file(p) for p in request.get("photos", [])]
    metadata = _displayer_module()
    schema = Path(mp.__file__).parent / "tasks" / "metadata" / "metadata_schema_py_generated.py"
    out = {"mediapipe_version": mp.__version__, "schema_sha256": hashlib.sha256(schema.read_bytes()).hexdigest(), "models": {}}
    for model in request["models"]:
        options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model))
        with ImageClassifier.create_from_options(options) as classifier:
            row = {"arrays": [_heads(classifier.classify(im)) for im in images], "photos": [_heads(classifier.classify(im)) for im in photos]}
        displayer = metadata.MetadataDisplayer.with_model_file(model)
        row["metadata_json"] = json.loads(displayer.get_metadata_json())
        row["packed"] = {n: displayer.get_associated_file_buffer(n).decode() for n in displayer.get_packed_associated_file_list()}
        out["models"][model] = row
    Path(result_path).write_text(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:3])
