"""catdog serve: a real server on localhost, real photos, bad uploads, a bounded load test, and
an end-to-end upload in headless Chromium."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog.data import decode
from conftest import NOT_PETS, REFERENCE, TRAIN, needs_shared, not_pets
from tools.mutations import scan_bomb

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# a held-out COCO photo (no cat, no dog; nothing trained on it) that subset_run's model calls "neither"
NOT_PET = NOT_PETS / "000000003255.jpg"  # skiers on a snowfield


def start(path) -> tuple[str, object]:
    from catdog.serve import load_predictor, make_server

    server = make_server(load_predictor(path), host="127.0.0.1", port=0, threads=8)

    def run():
        try:
            server.run()
        except OSError:  # the socket closed under the loop at teardown
            pass

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}", server


def post(url: str, data: bytes, multipart: bool = True, timeout: float = 30, query: str = "",
         filename: bytes = b"photo.jpg") -> tuple[int, dict]:
    if multipart:
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".encode() + filename + b"\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n"
        ) + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    else:
        body, headers = data, {"Content-Type": "application/octet-stream"}
    request = urllib.request.Request(url + "/predict" + query, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_serving_imports_no_tensorflow_and_reads_the_one_contract():
    """catdog.serve and catdog.runtime load without Keras or TensorFlow (an ONNX/TFLite server
    starts fast and small): both take the tensor names and the manifest from catdog.contract."""
    import sys

    code = "import sys, catdog.serve, catdog.runtime; print([m for m in ('tensorflow', 'keras') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    from catdog import contract, runtime, serve
    from catdog.export import contract as export_contract

    assert runtime.PROBABILITIES is contract.PROBABILITIES and export_contract.CAM is contract.CAM
    assert serve.load_manifest is contract.load_manifest


@pytest.fixture(scope="module")
def art_server(subset_artefacts):
    url, server = start(subset_artefacts)
    yield url
    server.close()


@needs_shared
def test_predict_matches_the_keras_model(art_server, subset_run):
    from catdog.cam import cam_model
    from catdog.training import load_run

    with urllib.request.urlopen(art_server + "/healthz") as response:
        assert response.status == 200 and "ONNX Runtime" in json.loads(response.read())["model"]
    model = cam_model(load_run(subset_run).model)
    for photo in (REFERENCE / "coral_cat_720p.jpg", TRAIN / "dog.950.jpg"):
        status, body = post(art_server, photo.read_bytes())
        assert status == 200, body
        expected = model.predict_on_batch(decode(photo)[None].astype(np.float32))
        p = np.asarray(expected["probabilities"])[0]
        assert body["label"] == ["cat", "dog"][int(p.argmax())]
        assert abs(body["probabilities"]["dog"] - p[1]) < 1e-4
        cam = np.asarray(body["cam"])
        assert cam.shape == (7, 7)
        assert np.allclose(cam, np.asarray(expected["cam"])[0, :, :, int(p.argmax())], atol=1e-3)
    status, raw = post(art_server, (REFERENCE / "coral_cat_720p.jpg").read_bytes(), multipart=False)
    assert status == 200 and raw["label"] == "cat"
    # file names as clients send them: UTF-8, and Latin-1 bytes (curl sends a local name as it is;
    # werkzeug dropped such a form and the photo got "not an image")
    for filename in ("café.jpg".encode(), b"caf\xe9.jpg", b"a\xff\xfe.jpg"):
        status, named = post(art_server, (REFERENCE / "coral_cat_720p.jpg").read_bytes(), filename=filename)
        assert status == 200 and named["probabilities"] == raw["probabilities"], (filename, named)


@needs_shared
def test_predict_answers_pet_and_verdict(art_server, subset_artefacts, subset_run):
    """Every answer carries P(pet) and catdog's verdict with the manifest's threshold: a cat photo is
    "cat", a photo with no cat or dog "neither" (and gets no CAM overlay); both as the Keras model says."""
    from catdog.contract import PET, PET_THRESHOLD, verdict
    from catdog.runtime import open_model

    assert NOT_PET.name in not_pets(held_out=True)
    threshold = json.loads((subset_artefacts / "manifest.json").read_text())[PET_THRESHOLD]
    with urllib.request.urlopen(art_server + "/healthz") as response:
        assert json.loads(response.read())[PET_THRESHOLD] == threshold
    reference = open_model(subset_run, temperature=1.0)
    for photo, expected in ((REFERENCE / "coral_cat_720p.jpg", "cat"), (NOT_PET, "neither")):
        status, body = post(art_server, photo.read_bytes(), query="?overlay=1")
        assert status == 200, body
        out = reference(decode(photo).astype(np.float32))
        pet = float(out[PET][0])
        assert isinstance(body["pet"], float) and abs(body["pet"] - pet) < 1e-4
        assert body["verdict"] == verdict(out["probabilities"], pet, threshold) == expected, (photo.name, pet, threshold)
        assert body["label"] in ("cat", "dog") and len(body["cam"]) == 7  # the likelier class and its map, as before
        assert ("overlay" in body) == (expected != "neither")


@needs_shared
def test_bad_uploads_get_4xx_and_the_server_keeps_serving(art_server):
    photo = (TRAIN / "cat.1.jpg").read_bytes()
    big = io.BytesIO()
    Image.open(TRAIN / "cat.1.jpg").convert("L").resize((7000, 6000)).save(big, format="PNG")
    bmp = io.BytesIO()
    Image.open(TRAIN / "cat.1.jpg").save(bmp, format="BMP")
    negative_width = bmp.getvalue()[:18] + (-8).to_bytes(4, "little", signed=True) + bmp.getvalue()[22:]
    cases = {
        "empty": (b"", 400, "empty file (0 bytes) in field 'file'"),
        "negative width": (negative_width, 400, "a side no format holds"),  # was 413 "pixel limit" for 4294967288 px
        "text": (b"hello, this is not a photo" * 10, 400, "not an image"),
        "truncated": (photo[: len(photo) // 3], 400, "cannot decode"),
        "too many pixels": (big.getvalue(), 413, "pixel limit"),
        "too many scans": (scan_bomb(photo, 20_000, 4000), 413, "scans"),  # minutes of decoding were it let through
        "too many bytes": (b"\xff" * (11 * 1024 * 1024), 413, "byte limit"),
    }
    for name, (data, status, words) in cases.items():
        got, body = post(art_server, data)
        assert got == status and words in body["error"], (name, got, body)
        assert "\n" not in body["error"]
    assert post(art_server, photo)[0] == 200


def test_status_follows_the_image_error_kind():
    """Every ImageError kind has its status: 413 too big, 415 another format, 400 the rest."""
    from catdog.data import IMAGE_KINDS, ImageKind
    from catdog.serve import STATUS_BY_KIND

    from catdog.serve import WEB_HINT

    assert set(STATUS_BY_KIND) == set(IMAGE_KINDS) == set(WEB_HINT)
    assert {k: s for k, s in STATUS_BY_KIND.items() if s != 400} == {ImageKind.TOO_BIG: 413, ImageKind.FORMAT: 415}


@needs_shared
def test_other_formats_get_415_and_damaged_headers_400(art_server):
    """The status comes from the ImageError's kind; the body is its reason up to the first ';' (the
    rest is advice for the command line), then what the sender can do (it was left out)."""
    from catdog.data import ImageError, open_rgb
    from catdog.serve import WEB_HINT

    im = Image.open(TRAIN / "cat.1.jpg")
    encoded = {}
    for fmt in ("GIF", "TIFF", "PNG"):
        buf = io.BytesIO()
        im.save(buf, format=fmt)
        encoded[fmt] = buf.getvalue()
    png = encoded["PNG"]
    cases = {
        "gif": (encoded["GIF"], 415, "content is GIF"),
        "tiff": (encoded["TIFF"], 415, "content is TIFF"),
        "damaged png header": (png[:29] + b"\0\0\0\0" + png[33:], 400, "corrupt PNG header"),
    }
    for name, (data, status, words) in cases.items():
        with pytest.raises(ImageError) as err:
            open_rgb(data)
        got, body = post(art_server, data)
        assert got == status and words in body["error"], (name, got, body)
        assert body == {"error": " ".join(str(err.value).split(";")[0].split()) + "; " + WEB_HINT[err.value.kind]}, (name, body)


@needs_shared
def test_bounded_load(art_server, tmp_path):
    photos = [p.read_bytes() for p in sorted(REFERENCE.glob("test_5*.jpg"))[:10]]

    def one(i):
        t = time.perf_counter()
        status, _ = post(art_server, photos[i % len(photos)])
        return status, time.perf_counter() - t

    start_time = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(200)))
    wall = time.perf_counter() - start_time
    latencies = np.array([t for _, t in results]) * 1000
    errors = sum(status != 200 for status, _ in results)
    report = {"requests": 200, "concurrency": 8, "errors": errors, "p50_ms": float(np.percentile(latencies, 50)),
              "p95_ms": float(np.percentile(latencies, 95)), "requests_per_s": 200 / wall}
    (tmp_path / "load.json").write_text(json.dumps(report))
    print(f"load test: {report}")
    assert errors == 0 and report["p95_ms"] < 5000


@needs_shared
def test_a_photo_in_a_field_without_a_file_name_and_a_form_of_many_parts(art_server):
    """curl -F "file=<photo.png" sends the photo as a field with no file name (werkzeug makes it
    text): answered as the same photo sent as a file; a form over werkzeug's 1,000 parts is a 413
    that says so, not "over the byte limit" for a few kilobytes."""
    photo = (TRAIN / "cat.1.jpg").read_bytes()
    png = io.BytesIO()
    Image.open(TRAIN / "cat.1.jpg").resize((1000, 750)).save(png, format="PNG")
    assert png.tell() > 500_000  # over werkzeug's default limit for a field held in memory
    boundary = uuid.uuid4().hex

    def form(parts: list[tuple[str, bytes]]) -> urllib.request.Request:
        body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode() + value + b"\r\n"
                        for name, value in parts) + f"--{boundary}--\r\n".encode()
        return urllib.request.Request(art_server + "/predict", data=body, method="POST",
                                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    for data in (photo, png.getvalue()):
        with urllib.request.urlopen(form([("file", data)]), timeout=60) as response:
            as_field = json.loads(response.read())
        assert as_field == post(art_server, data)[1], as_field
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(form([(f"x{i}", b"1") for i in range(1200)] + [("file", photo)]), timeout=60)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"] == "a form of more than 1,000 parts; send the photo alone, as field 'file'"


@needs_shared
def test_what_a_curl_user_meets(art_server, subset_artefacts, capsys, caplog, tmp_path):
    """From a probe with curl: an empty file in field 'file' was told "no image: send it as field
    'file'"; a form whose first 'file' part was empty was refused though the second held the photo;
    `?overlay=true` was ignored; the 405 did not say what to use; `curl -d @photo.jpg` (which drops
    the file's line-break bytes) got "corrupt JPEG header" alone; the answer's keys came sorted, the
    81 CAM numbers before the verdict; `catdog serve /nonexistent` said "not an ART_DIR"."""
    photo = (TRAIN / "cat.1.jpg").read_bytes()
    boundary = uuid.uuid4().hex

    def form(parts: list[bytes], query: str = "") -> tuple[int, bytes]:
        body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p{i}.jpg\"\r\n\r\n".encode() + value + b"\r\n"
                        for i, value in enumerate(parts)) + f"--{boundary}--\r\n".encode()
        request = urllib.request.Request(art_server + "/predict" + query, data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    status, body = form([b""])
    assert status == 400 and json.loads(body)["error"] == "empty file (0 bytes) in field 'file'; re-copy the photo or choose another"
    status, body = form([b"", photo])
    assert status == 200 and json.loads(body) == post(art_server, photo)[1]
    assert list(json.loads(body)) == ["verdict", "pet", "label", "probabilities", "cam"]  # the documented order
    for flag in ("1", "true", "yes"):
        assert json.loads(form([photo], f"?overlay={flag}")[1])["overlay"].startswith("data:image/png;base64,")
    assert "overlay" not in json.loads(form([photo], "?overlay=0")[1])
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(art_server + "/predict", timeout=30)
    error = json.loads(got.value.read())["error"]
    assert got.value.code == 405 and error.endswith(" URL; use POST /predict"), error  # not "URL.; use"
    with urllib.request.urlopen(urllib.request.Request(art_server + "/predict", method="OPTIONS"), timeout=30) as response:
        assert response.headers["Content-Type"] == "application/json" and "POST" in json.loads(response.read())["allow"]
    as_form_text = urllib.request.Request(art_server + "/predict", data=photo.replace(b"\n", b""), method="POST",
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as got:
        urllib.request.urlopen(as_form_text, timeout=30)
    assert got.value.code == 400 and "send it with --data-binary @FILE or -F file=@FILE" in json.loads(got.value.read())["error"]
    assert post(art_server, b"", multipart=False) == (400, {"error": "no image: send it as multipart field 'file' or as the request body"})
    # 24 requests at once on 8 threads: waitress logged "Task queue depth is N" for each one queued
    with caplog.at_level("INFO", logger="waitress"), ThreadPoolExecutor(max_workers=24) as pool:
        assert {status for status, _ in pool.map(lambda _: post(art_server, photo), range(24))} == {200}
    assert not [r for r in caplog.records if "queue depth" in r.getMessage()], caplog.records
    from catdog.cli import main

    assert main(["serve", "/nonexistent/art"]) == 2
    assert "/nonexistent/art: no such file or folder; pass an ART_DIR, a RUN_DIR or an artefact" in capsys.readouterr().err
    # the ART_DIR's own manifest.json: its folder is named (it said "not an ART_DIR (manifest.json) …")
    assert main(["serve", str(subset_artefacts / "manifest.json")]) == 2
    assert f"manifest.json is the manifest.json of ART_DIR {subset_artefacts}; give the folder, {subset_artefacts}" in capsys.readouterr().err
    # an ART_DIR copied in part: the artefact serve takes for it (the one predict and cam name) is said to be missing
    shutil.copy(subset_artefacts / "manifest.json", tmp_path / "manifest.json")
    assert main(["serve", str(tmp_path)]) == 2
    onnx = next(subset_artefacts.glob("*_fp32.onnx")).name
    assert f"{tmp_path / onnx}: missing, though manifest.json lists it" in capsys.readouterr().err


@needs_shared
def test_a_phone_sized_photo_with_max_pixels_and_ctrl_c_stops_the_server(art_server, subset_artefacts):
    """A 42-megapixel photo (a phone camera's) that predict and cam take was refused by serve, with
    no option to allow it: `--max-pixels` now reaches the server. Ctrl-C ended it with exit 0 and
    no line: it says it stopped. A real `catdog serve` process."""
    import signal
    import sys

    from conftest import REPO

    big = io.BytesIO()
    Image.open(TRAIN / "cat.1.jpg").resize((7000, 6000)).save(big, format="JPEG", quality=60)
    assert post(art_server, big.getvalue())[0] == 413  # the default, 40 million pixels
    script = Path(sys.executable).with_name("catdog")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    # pytest-xdist's workers ignore SIGINT, and a child inherits that: a terminal's Ctrl-C reaches a server started by hand
    server = subprocess.Popen([str(script), "serve", str(subset_artefacts), "--port", "0", "--max-pixels", "50000000"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        for line in server.stdout:  # the model loads, then the address is printed
            lines.append(line)
            if line.startswith("catdog serve:"):
                break
        url = re.search(r"http://\S+?:(\d+)/", lines[-1])
        assert url, lines
        status, body = post(f"http://127.0.0.1:{url.group(1)}", big.getvalue(), timeout=120)
        assert status == 200 and body["verdict"] == "cat", body
        server.send_signal(signal.SIGINT)
        rest = server.communicate(timeout=60)[0]
        assert server.returncode == 0 and rest.strip().splitlines()[-1] == "catdog serve: stopped", rest
    finally:
        server.kill()


def test_a_port_in_use_is_one_line(art_server, subset_artefacts):
    """`catdog serve` on the port a server already holds: one line naming the port, exit 2 (a
    real `catdog` process), and the first server still answers."""
    from conftest import catdog_cli

    port = art_server.rsplit(":", 1)[1]
    result = catdog_cli("serve", str(subset_artefacts), "--port", port, timeout=120)
    assert result.returncode == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        f"catdog: error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another with --port or --host"
    ), result.output
    with urllib.request.urlopen(art_server + "/healthz") as response:
        assert response.status == 200
    # a host name that does not resolve (waitress raises ValueError, not OSError): one line too
    result = catdog_cli("serve", str(subset_artefacts), "--host", "no-such-host.invalid", "--port", port, timeout=120)
    assert result.returncode == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"catdog: error: cannot listen on no-such-host.invalid:{port} (") and "Traceback" not in result.output, result.output


@needs_shared
def test_serves_one_artefact_as_the_phone_runs_it(subset_artefacts, tmp_path):
    """`catdog serve ART/x_int8.tflite` (or a .mlpackage) serves that file: /healthz names it and
    its engine, and every answer is that artefact's own outputs through catdog.runtime, with the
    manifest's threshold; a copy away from its manifest is refused in one line."""
    import shutil

    from catdog.contract import PET, PET_THRESHOLD, verdict
    from catdog.errors import CatdogError
    from catdog.runtime import open_model
    from catdog.serve import load_predictor

    threshold = json.loads((subset_artefacts / "manifest.json").read_text())[PET_THRESHOLD]
    for artefact, engine in ((next(subset_artefacts.glob("*_int8.tflite")), "LiteRT"),
                             (next(subset_artefacts.glob("*_fp16.mlpackage")), "ML Program interpreter")):
        url, server = start(artefact)
        try:
            with urllib.request.urlopen(url + "/healthz") as response:
                health = json.loads(response.read())
            assert health["model"].endswith(artefact.name) and engine in health["model"], health
            assert health[PET_THRESHOLD] == threshold
            direct = open_model(artefact)
            for photo in (REFERENCE / "coral_cat_720p.jpg", NOT_PET):
                status, body = post(url, photo.read_bytes())
                assert status == 200, body
                out = direct(decode(photo).astype(np.float32))
                p, pet = out["probabilities"], float(out[PET][0])  # one photo: unbatched outputs
                assert abs(body["probabilities"]["dog"] - p[1]) < 1e-4 and abs(body["pet"] - pet) < 1e-4, (artefact.name, body, p, pet)
                assert body["verdict"] == verdict(out["probabilities"], pet, threshold), (artefact.name, photo.name)
                assert np.allclose(body["cam"], out["cam"][:, :, int(p.argmax())], atol=1e-3)
        finally:
            server.close()
    package = next(subset_artefacts.glob("*_fp16.mlpackage"))
    away = tmp_path / package.name
    shutil.copytree(package, away)
    with pytest.raises(CatdogError, match=r"manifest\.json: missing, so the threshold of the neither answer is unknown"):
        load_predictor(away)
    # the page names the file it serves, as text: a name with markup in it stays text
    (tmp_path / "art").mkdir()
    int8 = next(subset_artefacts.glob("*_int8.tflite"))
    named = tmp_path / "art" / "<img src=x onerror=alert(1)>&.tflite"
    shutil.copy(int8, named)
    manifest = json.loads((subset_artefacts / "manifest.json").read_text())  # listed under that name, as an export would
    manifest["artefacts"] = [{**a, "file": named.name} if a["file"] == int8.name else a for a in manifest["artefacts"]]
    (tmp_path / "art" / "manifest.json").write_text(json.dumps(manifest))
    url, server = start(named)
    try:
        with urllib.request.urlopen(url + "/") as response:
            page = response.read().decode()
        assert "LiteRT: &lt;img src=x onerror=alert(1)&gt;&amp;.tflite" in page and "<img src=x" not in page
    finally:
        server.close()


@needs_shared
def test_keras_backend(subset_run):
    url, server = start(subset_run)
    try:
        status, body = post(url, (REFERENCE / "coral_cat_720p.jpg").read_bytes())
        assert status == 200 and body["label"] == body["verdict"] == "cat" and len(body["cam"]) == 7
        status, body = post(url, NOT_PET.read_bytes(), query="?overlay=1")
        assert status == 200 and body["verdict"] == "neither" and "overlay" not in body
    finally:
        server.close()


@needs_shared
def test_a_truncated_run_or_threshold_is_one_line_before_serving(subset_run, tmp_path):
    """A model.keras cut short (a copy interrupted) was "File not found" from Keras, of a file that
    is there; a pet_threshold edited to NaN served a model that never says neither."""
    from catdog.errors import CatdogError
    from catdog.serve import load_predictor

    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "model.keras").write_bytes((subset_run / "model.keras").read_bytes()[:300_000])
    shutil.copy(subset_run / "metrics.json", cut)
    with pytest.raises(CatdogError, match=r"model\.keras: not a whole \.keras file \(truncated or damaged\); train the run again"):
        load_predictor(cut)
    (cut / "metrics.json").write_text("{")
    shutil.copy(subset_run / "model.keras", cut)
    with pytest.raises(CatdogError, match=r"cut/metrics\.json: cannot read it \(Expecting property name"):
        load_predictor(cut)
    nan = tmp_path / "nan"
    shutil.copytree(subset_run, nan, ignore=shutil.ignore_patterns("artefacts", "*.h5"))
    metrics = json.loads((nan / "metrics.json").read_text())
    (nan / "metrics.json").write_text(json.dumps({**metrics, "pet_threshold": float("nan")}))
    with pytest.raises(CatdogError, match="pet_threshold nan is not a probability within 0..1"):
        load_predictor(nan)


@needs_shared
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_upload_in_headless_chromium(art_server, tmp_path):
    from playwright.sync_api import sync_playwright

    shot = Path(__file__).resolve().parent / "output" / "serve_e2e.png"
    neither_shot = shot.with_name("serve_e2e_neither.png")
    shot.parent.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(art_server + "/")
        page.set_input_files("#file", str(REFERENCE / "coral_cat_720p.jpg"))
        page.wait_for_selector("#result:not([hidden])", timeout=30000)
        page.wait_for_function("document.getElementById('overlay').complete && document.getElementById('overlay').naturalWidth > 0")
        assert page.inner_text("#result-label").startswith("It's a cat")
        assert float(page.inner_text("#p-cat").rstrip(" %")) > 50
        assert page.locator("#overlay-figure").is_visible()
        page.screenshot(path=str(shot), full_page=True)
        # a photo with no cat or dog: said so, and the photo alone (a CAM would be evidence of nothing)
        page.set_input_files("#file", str(NOT_PET))
        page.wait_for_function("document.getElementById('result-label').textContent === 'No cat or dog found'", timeout=30000)
        assert page.locator("#result").is_visible() and page.locator("#photo").is_visible()
        assert not page.locator("#overlay-figure").is_visible() and page.get_attribute("#overlay", "src") is None
        assert not page.locator("#classes").is_visible()
        page.screenshot(path=str(neither_shot), full_page=True)
        page.set_input_files("#file", {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"not a photo"})
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert page.inner_text("#error").startswith("notes.jpg: not an image") and page.locator("#result").is_hidden()  # named
        # over the upload limit: said by the page (with the limit the server reads), nothing sent
        sent = []
        page.on("request", lambda r: sent.append(r.url) if "/predict" in r.url else None)
        page.set_input_files("#file", {"name": "huge.jpg", "mimeType": "image/jpeg", "buffer": b"\xff" * (11 * 1024 * 1024)})
        page.wait_for_function("document.getElementById('error').textContent.includes('huge.jpg')")
        assert "11.0 MiB, over the 10 MiB limit" in page.inner_text("#error") and not sent
        # a slow answer arriving after a later photo's: the later photo's answer stays (the cat was shown over the vase)
        held = []
        page.route("**/predict*", lambda route: held.append(route) if not held else route.continue_())
        page.set_input_files("#file", str(REFERENCE / "coral_cat_720p.jpg"))
        while not held:
            page.wait_for_timeout(50)
        page.set_input_files("#file", str(NOT_PET))
        page.wait_for_function("document.getElementById('result-label').textContent === 'No cat or dog found'", timeout=30000)
        try:
            held[0].continue_()  # the page gave up on it (aborted): nothing to continue, where the fix holds
        except Exception:
            pass
        page.wait_for_timeout(2000)
        assert page.inner_text("#result-label") == "No cat or dog found" and page.inner_text("#error") == ""
        page.unroute("**/predict*")
        # the server gone (the request fails in the network): a message, not a blank page
        page.route("**/predict*", lambda route: route.abort())
        page.set_input_files("#file", str(REFERENCE / "coral_cat_720p.jpg"))
        page.wait_for_function("document.getElementById('error').textContent.includes('cannot reach')")
        assert "is catdog serve still running?" in page.inner_text("#error") and page.locator("#result").is_hidden()
        browser.close()
    assert shot.stat().st_size > 20_000 and neither_shot.stat().st_size > 20_000


def _raw(url: str, request: bytes, timeout: float = 10) -> tuple[int, str, bytes]:
    """Send `request` as it is (the requests waitress answers itself); status, Content-Type, body."""
    import socket

    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers.get("Content-Type", ""), body


@needs_shared
def test_what_waitress_answers_itself_is_json_and_expect_continue_is_answered(art_server):
    """Requests refused before the app sees them got waitress's plain text; a body-less request
    expecting `100 Continue` (curl -H 'Expect: 100-continue') got no answer for 120 s; a photo just
    under the limit was refused when sent as a form (the limit counted the form's own bytes)."""
    cases = {
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n": (501, "Not Implemented"),
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 31457280\r\n\r\n": (413, "Request Entity Too Large"),
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n": (400, "Bad Request"),
    }
    for request, (status, words) in cases.items():
        got, kind, body = _raw(art_server, request)
        answer = json.loads(body)
        assert (got, kind) == (status, "application/json") and answer["error"].startswith(words) and "\n" not in answer["error"], (got, kind, body)
    start = time.monotonic()
    got, kind, body = _raw(art_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
    assert got == 200 and json.loads(body)["status"] == "ok" and time.monotonic() - start < 5, (got, body)
    from catdog.serve import MAX_UPLOAD_BYTES

    photo = (TRAIN / "cat.1.jpg").read_bytes()
    padded = photo + b"\0" * (MAX_UPLOAD_BYTES - len(photo) - 100)  # JPEG decoders stop at its end marker
    status, body = post(art_server, padded)
    assert status == 200 and body["label"] == "cat", body
    status, body = post(art_server, padded + b"\0" * 200)
    assert status == 413 and "byte limit" in body["error"], body
