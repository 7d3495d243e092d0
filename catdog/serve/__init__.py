"""`catdog serve`: a web page and a JSON API that classify an uploaded photo and show its CAM.

Server: Flask for the routes, served by waitress (a pure-Python, multi-threaded WSGI server;
8 worker threads by default), so concurrent requests are handled without a separate process
manager. The model behind it is chosen by what it is pointed at:

* an ART_DIR (has manifest.json): its ONNX fp32 artefact through ONNX Runtime, else its TFLite
  fp32 artefact through LiteRT — small and fast;
* a RUN_DIR (has model.keras): the Keras CAM model.

API: `POST /predict` with the image as multipart field `file` or as the raw body;
answer `{"label": "dog", "probabilities": {"cat": 0.01, "dog": 0.99}, "cam": [[7 x 7]]}` (the map
of the predicted class), plus `"overlay"` (a PNG data URI) when `?overlay=1`. `GET /healthz`
answers 200 once the model is loaded. A bad upload gets a 4xx with a one-line reason.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.data import IMAGE_SIZE, LABELS, ImageError, open_rgb, resize
from catdog.errors import CatdogError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
PAGE = Path(__file__).with_name("page.html")


class Predictor:
    """Raw photo (S, S, 3) uint8 -> (probabilities (2,), cam (S/32, S/32, 2)); thread-safe."""

    description = ""
    image_size = IMAGE_SIZE  # S, the model's input size

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class OnnxPredictor(Predictor):
    def __init__(self, path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # run() is thread-safe
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.image_size = int(self.session.get_inputs()[0].shape[1])
        self.description = f"ONNX Runtime: {path.name}"

    def __call__(self, image):
        out = dict(zip(self.outputs, self.session.run(None, {"image": image[None].astype(np.float32)})))
        return out["probabilities"][0], out["cam"][0]


class LiteRTPredictor(Predictor):
    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.image_size = int(Interpreter(model_path=str(path)).get_input_details()[0]["shape"][1])
        self.local = threading.local()  # an interpreter is not thread-safe: one per worker thread
        self.description = f"LiteRT: {path.name}"

    def __call__(self, image):
        from ai_edge_litert.interpreter import Interpreter

        if not hasattr(self.local, "runner"):
            self.local.runner = Interpreter(model_path=str(self.path), num_threads=1).get_signature_runner("serving_default")
        out = self.local.runner(image=image[None].astype(np.float32))
        return out["probabilities"][0], out["cam"][0]


class KerasPredictor(Predictor):
    def __init__(self, run_dir: Path):
        from catdog.cam import cam_model
        from catdog.training import load_run

        from catdog.features import input_size

        self.model = cam_model(load_run(run_dir).model)
        self.image_size = input_size(self.model)
        self.lock = threading.Lock()
        self.description = f"Keras: {run_dir / 'model.keras'}"

    def __call__(self, image):
        with self.lock:
            out = self.model.predict_on_batch(image[None].astype(np.float32))
        return np.asarray(out["probabilities"])[0], np.asarray(out["cam"])[0]


def load_predictor(path: str | os.PathLike) -> Predictor:
    """The predictor for an ART_DIR (ONNX, else TFLite, fp32) or a RUN_DIR (Keras)."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        from catdog.export import load_manifest

        artefacts = {(a["format"], a["precision"]): path / a["file"] for a in load_manifest(path)["artefacts"]}
        for key, cls in ((("onnx", "fp32"), OnnxPredictor), (("tflite", "fp32"), LiteRTPredictor)):
            if key in artefacts and artefacts[key].exists():
                return cls(artefacts[key])
        raise CatdogError(f"{path}: no ONNX or TFLite fp32 artefact to serve; export with --formats onnx --precision fp32")
    if (path / "model.keras").is_file():
        return KerasPredictor(path)
    raise CatdogError(f"{path}: neither an ART_DIR (manifest.json) nor a RUN_DIR (model.keras); pass one of them")


def overlay_data_uri(photo: Image.Image, cam_map: np.ndarray, size: int = 480) -> str:
    from catdog.cam import overlay

    photo = photo.copy()
    photo.thumbnail((size, size))
    buf = io.BytesIO()
    Image.fromarray(overlay(np.asarray(photo), cam_map)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def create_app(predictor: Predictor, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS):
    """The Flask app: `/` (page), `/predict` (JSON), `/healthz`."""
    from flask import Flask, jsonify, request

    app = Flask("catdog")
    app.config["MAX_CONTENT_LENGTH"] = max_bytes

    def error(status: int, reason: str):
        return jsonify({"error": reason}), status

    @app.errorhandler(413)
    def too_large(_):
        return error(413, f"upload over the {max_bytes:,}-byte limit; send a smaller photo")

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "model": predictor.description})

    @app.get("/")
    def page():
        return PAGE.read_text().replace("{{MODEL}}", predictor.description), 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.post("/predict")
    def predict():
        if "file" in request.files:
            data = request.files["file"].read()
        else:
            data = request.get_data()
        if not data:
            return error(400, "no image: send it as multipart field 'file' or as the request body")
        try:
            photo = open_rgb(bytes(data), max_pixels)
        except ImageError as exc:
            status = 413 if "pixel limit" in str(exc) else 400
            return error(status, str(exc).split(";")[0])
        probabilities, cam = predictor(resize(photo, predictor.image_size))
        label = int(np.argmax(probabilities))
        body = {
            "label": LABELS[label],
            "probabilities": {name: round(float(p), 6) for name, p in zip(LABELS, probabilities)},
            "cam": np.round(cam[..., label].astype(float), 5).tolist(),
        }
        if request.args.get("overlay") == "1":
            body["overlay"] = overlay_data_uri(photo, cam[..., label])
        return jsonify(body)

    return app


def serve(path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, threads: int = 8) -> None:
    from waitress import serve as waitress_serve

    predictor = load_predictor(path)
    print(f"catdog serve: {predictor.description} on http://{host}:{port}/ (waitress, {threads} threads)")
    waitress_serve(create_app(predictor), host=host, port=port, threads=threads)
