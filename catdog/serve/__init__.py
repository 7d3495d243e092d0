"""`catdog serve`: a web page and a JSON API that classify an uploaded photo and show its CAM.

Server: Flask for the routes, served by waitress (a pure-Python, multi-threaded WSGI server;
8 worker threads by default), so concurrent requests are handled without a separate process
manager. The model behind it is chosen by what it is pointed at, and loaded and run by
`catdog.runtime`:

* an ART_DIR (has manifest.json): its ONNX fp32 artefact through ONNX Runtime, else its TFLite
  fp32 artefact through LiteRT — small and fast;
* a RUN_DIR (has model.keras): the Keras CAM model of its model as saved (its
  calibration temperature not folded in).

API: `POST /predict` with the image as multipart field `file` or as the raw body;
answer `{"verdict": "dog", "pet": 0.98, "label": "dog", "probabilities": {"cat": 0.01, "dog": 0.99},
"cam": [[7 x 7]]}`: `verdict` is catdog's answer (`catdog.contract.verdict`: "neither" where `pet`,
P(a cat or a dog is in the photo), is under the threshold in manifest.json, or in metrics.json when
serving a RUN_DIR), `label` the likelier of cat and dog whatever the verdict, `cam` the map of
`label`. `?overlay=1` adds `"overlay"` (a PNG data URI) for a cat or dog verdict only: for
"neither" the map is no evidence of anything. `GET /healthz` answers 200 once the model is loaded.

Hostile input: every answer is JSON, and every error is `{"error": "<one line>"}`: a bad upload
gets 400 (not an image, corrupt, truncated), 413 (over MAX_UPLOAD_BYTES, or a header declaring over
MAX_UPLOAD_PIXELS: refused before decoding) or 415 (a format other than JPEG, PNG, BMP, WebP), chosen
by the ImageError's kind (STATUS_BY_KIND);
unknown routes and methods 404/405. Only JPEG, PNG, BMP and WebP readers ever see the bytes
(`catdog.data.open_rgb`). waitress buffers a body (to a temporary file past 512 KB) up to twice
MAX_UPLOAD_BYTES, so any upload up to that size gets the JSON 413; past it waitress answers 413
itself and closes the connection instead of spooling gigabytes. Memory: the header's pixel count is read first
(`catdog.data.probe`) and the request then waits for room in a `PixelBudget` of DECODE_PIXELS
(2 x MAX_UPLOAD_PIXELS) decoded pixels shared by all threads, so photos in flight hold at most
DECODE_PIXELS x 9 bytes (0.72 GB) whatever arrives, plus each thread's upload (2 x 10 MiB) and the
runtime's inference buffers; tests/test_soak.py and `python -m bench soak` measure the whole:
peak RSS under 1.4 GB over the idle server (tools/faults.py MEMORY_BOUND_MB).
"""

from __future__ import annotations

import base64
import html
import io
import os
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from catdog.contract import (
    NEITHER, PET, PET_THRESHOLD, ArtDir, RunDir, desktop_artefact, load_manifest, owned_file, pet_threshold, verdict,
)
from catdog.data import LABELS, ImageError, ImageKind, open_rgb, probe, resize
from catdog.data.limits import MAX_UPLOAD_PIXELS
from catdog.errors import CatdogError
from catdog.runtime import CAM, PROBABILITIES, SUFFIX_FORMAT, Model, format_of, open_model

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024  # a multipart form's own bytes allowed beyond the photo's limit
DECODE_PIXELS = 2 * MAX_UPLOAD_PIXELS  # decoded pixels in flight across all worker threads
PAGE = Path(__file__).with_name("page.html")
# The HTTP status of a refused upload, by its ImageError kind (catdog.data.ImageKind); never by its message.
STATUS_BY_KIND = {
    ImageKind.TOO_BIG: 413,  # a header declaring over MAX_UPLOAD_PIXELS, or a JPEG over the scan limit: refused before decoding
    ImageKind.FORMAT: 415,  # a format other than JPEG, PNG, BMP, WebP
    ImageKind.NOT_IMAGE: 400,
    ImageKind.CORRUPT: 400,
    ImageKind.UNDECODABLE: 400,
    ImageKind.EMPTY: 400,
    ImageKind.NO_PIXELS: 400,
    ImageKind.UNREADABLE: 400,
}
# What the sender can do, by kind: the ImageError's own advice is for the command line (raise
# --max-pixels, check the path), so it is cut and this said in its place.
WEB_HINT = {
    ImageKind.TOO_BIG: "send a smaller photo (the server's --max-pixels sets the limit)",
    ImageKind.FORMAT: "convert it to JPEG or PNG and send it again",
    ImageKind.NOT_IMAGE: "send a JPEG, PNG, BMP or WebP photo",
    ImageKind.CORRUPT: "send the original photo again, or another",
    ImageKind.UNDECODABLE: "send the original photo again, or another",
    ImageKind.EMPTY: "send the original photo again, or another",
    ImageKind.NO_PIXELS: "send a photo with pixels in it",
    ImageKind.UNREADABLE: "send the photo again",
}


class Predictor:
    """Raw photo (S, S, 3) uint8 -> (probabilities (2,), cam (S/32, S/32, 2)); thread-safe.
    `outputs(photo)` adds `pet` (P(a cat or a dog)); `pet_threshold` is where "neither" begins.

    A thin wrapper of a `catdog.runtime` Model, which loads and runs the model."""

    def __init__(self, model: Model, pet_threshold: float):
        self.model = model
        self.pet_threshold = float(pet_threshold)
        self.image_size = model.image_size  # S, the model's input size
        self.description = f"{model.engine}: {model.path / 'model.keras' if model.format == 'keras' else model.path.name}"

    def outputs(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """{"probabilities": (2,), "cam": (S/32, S/32, 2), "pet": float}."""
        out = self.model(image)
        if PET not in out:
            raise CatdogError(f"{self.model.path}: the model has no '{PET}' output (made by an older catdog); export it again")
        return {PROBABILITIES: out[PROBABILITIES], CAM: out[CAM], PET: float(np.ravel(out[PET])[0])}

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.model(image)
        return out[PROBABILITIES], out[CAM]


class PixelBudget:
    """At most `capacity` decoded pixels in flight across threads: `with budget.reserve(n):`
    waits until n more fit (a photo larger than the capacity waits until it is alone)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int):
        pixels = min(pixels, self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + pixels <= self.capacity)
            self.in_use += pixels
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()


def _serving_model(artefact: Path) -> Model:
    """An artefact loaded to serve: LiteRT with one single-threaded interpreter per worker thread
    (waitress runs several), the other engines with their own threads."""
    return open_model(artefact, threads=1 if format_of(artefact) == "tflite" else None)


def load_predictor(path: str | os.PathLike) -> Predictor:
    """The predictor for an ART_DIR (ONNX, else TFLite, fp32), one artefact (.tflite, .onnx or
    .mlpackage: the model a phone ships, run as `catdog.runtime` runs it) or a RUN_DIR (Keras),
    with the threshold on P(pet) from the manifest.json of the ART_DIR or beside the artefact, or
    the RUN_DIR's metrics.json."""
    path = Path(path)
    if not path.exists():
        raise CatdogError(f"{path}: no such file or folder; pass an ART_DIR, a RUN_DIR or an artefact")
    if path.suffix in SUFFIX_FORMAT:
        return Predictor(_serving_model(path), pet_threshold(path))
    if (path / ArtDir.MANIFEST).is_file():
        file = desktop_artefact(load_manifest(path))
        if file:  # a listed file that is missing is the runtime's one line ("missing, though manifest.json lists it")
            return Predictor(_serving_model(path / file), pet_threshold(path))
        raise CatdogError(f"{path}: no ONNX or TFLite fp32 artefact to serve; export with --formats onnx --precision fp32")
    if (path / RunDir.MODEL).is_file():
        return Predictor(open_model(path, temperature=1.0), pet_threshold(path))  # the run's model as saved, as before
    if path.is_file() and (owner := owned_file(path)):  # run/model.keras, art/manifest.json: named as what it is not
        raise CatdogError(f"{path} is {owner}; give the folder, {path.parent}")
    raise CatdogError(f"{path}: not an ART_DIR (manifest.json), a RUN_DIR (model.keras) or an artefact "
                      f"({', '.join(SUFFIX_FORMAT)}); pass one of them")


def uploaded_photo(request) -> bytes:
    """The photo of a POST /predict: multipart field 'file', else the request body. werkzeug drops a
    whole form, silently, when a part's headers are not UTF-8 (a Latin-1 file name, as curl sends a
    local one); the body is kept for that case and read by the standard library's email parser,
    which takes such bytes as they are."""
    if request.mimetype != "multipart/form-data":
        return request.get_data()
    body = request.get_data(cache=True, parse_form_data=False)  # the form parses from this copy
    if "file" in request.files:  # the first part with bytes (a form may carry an empty one first)
        parts = [f.read() for f in request.files.getlist("file")]
        return next((part for part in parts if part), b"")
    if (request.files or request.form) and "file" not in request.form:
        return b""
    # no form, or field 'file' without a file name (werkzeug made it text): its bytes, as sent
    from email import message_from_bytes, policy

    message = message_from_bytes(f"Content-Type: {request.content_type}\r\n\r\n".encode("latin-1") + body, policy=policy.HTTP)
    for part in message.iter_parts() if message.is_multipart() else ():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True) or b""
    return b""


def overlay_data_uri(photo: Image.Image, cam_map: np.ndarray, size: int = 480) -> str:
    from catdog.cam import overlay

    photo = photo.copy()
    photo.thumbnail((size, size))
    buf = io.BytesIO()
    Image.fromarray(overlay(np.asarray(photo), cam_map)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def create_app(
    predictor: Predictor, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS,
    decode_pixels: int = DECODE_PIXELS,
):
    """The Flask app: `/` (page), `/predict` (JSON), `/healthz`."""
    from flask import Flask, jsonify, request
    from werkzeug.exceptions import HTTPException

    app = Flask("catdog")
    app.json.sort_keys = False  # the answer's keys in the documented order: verdict first, the 81 CAM numbers last
    # the limit is the photo's: a form's boundaries and part headers come on top (a photo just under
    # it was refused sent from the page, and taken sent as the body)
    request_bytes = max_bytes + FORM_OVERHEAD
    app.config["MAX_CONTENT_LENGTH"] = request_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = request_bytes  # a photo sent as a field without a file name (curl -F "file=<x.png")
    budget = PixelBudget(max(decode_pixels, max_pixels))
    over_limit = f"upload over the {max_bytes:,}-byte limit; send a smaller photo"

    def error(status: int, reason: str):
        return jsonify({"error": " ".join(reason.split())}), status  # one line, whatever the reason held

    @app.errorhandler(413)
    def too_large(_):
        if request.content_length is not None and request.content_length <= request_bytes:  # werkzeug's form limits
            return error(413, f"a form of more than {app.config['MAX_FORM_PARTS']:,} parts; send the photo alone, as field 'file'")
        return error(413, over_limit)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # 404, 405, malformed requests: JSON like every other answer
        allowed = sorted(set(getattr(exc, "valid_methods", None) or ()) - {"HEAD", "OPTIONS"})
        said = f"; use {' or '.join(allowed)} {request.path}" if exc.code == 405 and allowed else ""
        return error(exc.code or 400, f"{exc.name}: {exc.description.rstrip('.')}{said}")  # not "URL.; use POST"

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):  # a bug, not the upload's fault: logged, and still one line
        traceback.print_exception(exc, file=sys.stderr)
        return error(500, f"internal error ({type(exc).__name__}); the server log has the traceback")

    @app.after_request
    def options_as_json(response):  # Flask answers OPTIONS itself, with an empty text/html body
        if request.method == "OPTIONS" and response.status_code == 200 and not response.is_json:
            allowed = sorted(m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip())
            response.set_data(jsonify({"allow": allowed}).get_data())
            response.mimetype = "application/json"
        return response

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "model": predictor.description, PET_THRESHOLD: predictor.pet_threshold})

    @app.get("/")
    def page():
        text = PAGE.read_text().replace("{{MODEL}}", html.escape(predictor.description))  # a file name is text, not markup
        text = text.replace("{{MAX_BYTES}}", str(max_bytes))
        return text, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.post("/predict")
    def predict():
        data = uploaded_photo(request)
        if not data and "file" in request.files:  # the field was sent: the file in it is what is empty
            return error(400, "empty file (0 bytes) in field 'file'; re-copy the photo or choose another")
        if not data:
            return error(400, "no image: send it as multipart field 'file' or as the request body")
        if len(data) > max_bytes:
            return error(413, over_limit)
        data = bytes(data)
        try:
            width, height = probe(data, max_pixels)  # header only: refuse bombs before any decoding
            with budget.reserve(width * height):
                return jsonify(classify(open_rgb(data, max_pixels), request.args.get("overlay", "").lower() in ("1", "true", "yes", "on")))
        except ImageError as exc:
            hint = ""
            if request.mimetype == "application/x-www-form-urlencoded":  # curl -d @photo.jpg drops the file's CR and LF bytes
                hint = " (sent as form text, as curl -d does, which drops line-break bytes: send it with --data-binary @FILE or -F file=@FILE)"
            return error(STATUS_BY_KIND.get(exc.kind, 400), f"{str(exc).split(';')[0]}; {WEB_HINT.get(exc.kind, 'send another photo')}{hint}")

    def classify(photo: Image.Image, with_overlay: bool) -> dict:
        out = predictor.outputs(resize(photo, predictor.image_size))
        probabilities, cam, pet = out[PROBABILITIES], out[CAM], out[PET]
        label = int(np.argmax(probabilities))
        answer = verdict(probabilities, pet, predictor.pet_threshold, LABELS)
        body = {
            "verdict": answer,
            "pet": round(pet, 6),
            "label": LABELS[label],
            "probabilities": {name: round(float(p), 6) for name, p in zip(LABELS, probabilities)},
            "cam": np.round(cam[..., label].astype(float), 5).tolist(),
        }
        if with_overlay and answer != NEITHER:  # no cat or dog: the map is evidence of nothing
            body["overlay"] = overlay_data_uri(photo, cam[..., label])
        return body

    return app


def make_server(
    predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, threads: int = 8,
    max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS, decode_pixels: int = DECODE_PIXELS,
):
    """The waitress server for `create_app` (port 0: any free port, see `.effective_port`);
    `.run()` serves until `.close()`."""
    import logging

    from waitress import create_server

    # "Task queue depth is N" once per request queued behind busy threads: requests waiting their
    # turn are the design (threads), not a fault; a console of them hid the server's own lines
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = create_app(predictor, max_bytes, max_pixels, decode_pixels)
    sockets: dict = {}
    server = create_server(app, map=sockets, host=host, port=port, threads=threads, max_request_body_size=2 * max_bytes)
    channel = _json_channel()
    for listener in sockets.values():  # one per address a host name resolves to
        if hasattr(listener, "channel_class"):
            listener.channel_class = channel
    return server


def _json_channel():
    """waitress's connection class, with the requests waitress answers itself (a body over its
    limit, a bad Content-Length or chunk, an unsupported Transfer-Encoding, a garbled request line)
    answered in JSON like the app's (they were plain text), and a body-less request that expects
    `100 Continue` answered at once (waitress 3.0.2 marked it unfinished again: no answer for 120 s)."""
    import json

    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):
        def execute(self):
            e = self.request.error
            body = json.dumps({"error": " ".join(f"{e.reason}: {e.body}".split())}).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonChannel(HTTPChannel):
        error_task_class = JsonErrorTask

        def send_continue(self):
            if self.request.completed:  # nothing to continue with: its answer comes next
                self.request.expect_continue = False
                return
            super().send_continue()

    return JsonChannel


def return_freed_memory() -> bool:
    """Make glibc give large freed blocks back to the system (a fixed 128 KiB mmap threshold).

    By default glibc raises its mmap threshold after the first large free, so later decoded photos
    (Pillow allocates them in 16 MB blocks) come from per-thread heaps that never shrink: measured
    with `python -m bench soak`, the server's RSS then grew by 1.6 GB over 300 requests; with the
    threshold fixed it stays flat. Same as MALLOC_MMAP_THRESHOLD_=131072. False where not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 128 * 1024))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def serve(path: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, threads: int = 8,
          max_pixels: int = MAX_UPLOAD_PIXELS) -> None:
    """`catdog serve`. max_pixels: an upload declaring more is refused (413) before decoding; the
    decoded pixels in flight are bounded to twice it."""
    return_freed_memory()
    predictor = load_predictor(path)
    try:
        server = make_server(predictor, host, port, threads, max_pixels=max_pixels, decode_pixels=2 * max_pixels)
    except (OSError, ValueError) as exc:  # the port taken, a host this machine does not have or cannot resolve, a port under 1024
        cause = exc if isinstance(exc, OSError) else exc.__context__ or exc  # waitress: ValueError from socket.gaierror
        raise CatdogError(f"cannot listen on {host}:{port} ({getattr(cause, 'strerror', None) or cause}); "
                          "choose another with --port or --host") from None
    shown_host = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    print(f"catdog serve: {predictor.description} on http://{shown_host}:{server.effective_port}/ (waitress, {threads} threads)", flush=True)
    server.run()  # returns on Ctrl-C (waitress takes the KeyboardInterrupt): stopping a server is its normal end
    print("catdog serve: stopped", flush=True)
