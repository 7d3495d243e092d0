"""A real `catdog serve` in its own process, and the load driver the soak test and
`python -m bench soak` share: requests, latencies, status counts, and the server's RSS over time."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog.data import ImageError, ImageKind
from catdog.data.limits import MAX_JPEG_SCANS

REPO = Path(__file__).resolve().parents[1]
# The server's peak RSS over its idle RSS (catdog/serve: DECODE_PIXELS x 9 bytes = 0.72 GB of photos
# in flight, 8 threads x 2 x 10 MiB of uploads, ONNX Runtime's buffers for 8 concurrent runs ~0.15 GB,
# and the allocator's slack). Measured worst case: 16 concurrent largest palette PNGs, 1.2 GB.
MEMORY_BOUND_MB = 1400
HAVE_PROC = Path("/proc/self/status").is_file()  # RSS is read from /proc (Linux)


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident set (VmRSS) or its peak so far (VmHWM), from /proc (Linux)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


class Server:
    """`catdog serve PATH --port 0` in a child process; `.url`, `.pid`, `.log()` (its stderr)."""

    def __init__(self, path: Path, threads: int = 8, timeout: float = 180):
        self.log_file = tempfile.NamedTemporaryFile(prefix="catdog-serve-", suffix=".log", delete=False)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, "-m", "catdog.cli", "serve", str(path), "--port", "0", "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self.log_file, text=True)
        self.pid = self.proc.pid
        line = self._first_line(timeout)
        match = re.search(r"on (http://[\d.]+:\d+)/", line)
        if not match:
            self.stop()
            raise RuntimeError(f"catdog serve did not start: {line!r}; log: {self.log()[-2000:]}")
        self.url = match.group(1)
        host, port = self.url[len("http://") :].split(":")
        self.host, self.port = host, int(port)
        self.idle_rss = rss_bytes(self.pid) if HAVE_PROC else 0  # loaded, before any request

    def _first_line(self, timeout: float) -> str:
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return out[0] if out else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        Path(self.log_file.name).unlink(missing_ok=True)


@dataclass
class Answer:
    status: int  # 0: the connection dropped or timed out
    body: dict
    seconds: float
    failure: str = ""  # why there is no parsable answer

    @property
    def one_line_reason(self) -> bool:
        reason = self.body.get("error")
        return isinstance(reason, str) and 0 < len(reason) and "\n" not in reason


def post(host: str, port: int, data: bytes, multipart: bool = True, path: str = "/predict", timeout: float = 60) -> Answer:
    """POST `data` (as multipart field `file`, or as the raw body) on a fresh connection."""
    if multipart:
        boundary = uuid.uuid4().hex
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    else:
        body, headers = data, {"Content-Type": "application/octet-stream"}
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, {}, time.perf_counter() - start, f"connection: {type(exc).__name__}: {exc}")
    finally:
        conn.close()
    seconds = time.perf_counter() - start
    try:
        parsed = json.loads(raw)
    except ValueError:
        return Answer(status, {}, seconds, f"not JSON: {raw[:120]!r}")
    return Answer(status, parsed if isinstance(parsed, dict) else {}, seconds)


def healthz(host: str, port: int, timeout: float = 10) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def soak(
    server: Server, clean: list[bytes], hostile: list[bytes], requests: int, concurrency: int, warmup: int,
) -> dict:
    """`requests` uploads at `concurrency` in flight, every third one hostile (cycling through
    `hostile`, the others through `clean`), after `warmup` uploads that are not counted (the
    allocator and the model's buffers settle). The server's RSS is sampled every 50 ms.

    Returns counts by status, latencies (ms) of clean and hostile requests, failures (5xx,
    dropped connections, non-JSON answers, errors without a one-line reason, clean photos not
    answered 200), and RSS: idle (before any request), after warm-up, at the end, the largest
    sample, and the peak (VmHWM).
    """
    plan = [(True, hostile[i // 3 % len(hostile)]) if i % 3 == 2 else (False, clean[i % len(clean)]) for i in range(requests)]

    def one(item):
        is_hostile, data = item
        return is_hostile, post(server.host, server.port, data, multipart=len(data) % 2 == 0)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, [(False, clean[i % len(clean)]) for i in range(warmup)] + [(True, h) for h in hostile]))
    rss_start = rss_bytes(server.pid)
    samples: list[int] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_bytes(server.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, plan))
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    rss_end = rss_bytes(server.pid)
    statuses: dict[str, int] = {}
    failures = []
    for is_hostile, a in results:
        statuses[str(a.status)] = statuses.get(str(a.status), 0) + 1
        if a.failure or a.status >= 500 or a.status == 0:
            failures.append(a.failure or f"{a.status}: {a.body}")
        elif not is_hostile and a.status != 200:
            failures.append(f"clean photo answered {a.status}: {a.body}")
        elif a.status != 200 and not a.one_line_reason:
            failures.append(f"{a.status} without a one-line reason: {a.body}")
    ms = lambda xs: np.array([a.seconds * 1000 for h, a in results if h == xs]) if any(h == xs for h, _ in results) else np.zeros(1)  # noqa: E731
    clean_ms, hostile_ms = ms(False), ms(True)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "hostile": sum(h for h, _ in plan),
        "warmup": warmup + len(hostile),
        "statuses": statuses,
        "failures": len(failures),
        "failure_examples": failures[:5],
        "wall_s": wall,
        "requests_per_s": requests / wall,
        "clean_p50_ms": float(np.percentile(clean_ms, 50)),
        "clean_p95_ms": float(np.percentile(clean_ms, 95)),
        "hostile_p50_ms": float(np.percentile(hostile_ms, 50)),
        "hostile_p95_ms": float(np.percentile(hostile_ms, 95)),
        "all_p50_ms": float(np.percentile(np.concatenate([clean_ms, hostile_ms]), 50)),
        "all_p95_ms": float(np.percentile(np.concatenate([clean_ms, hostile_ms]), 95)),
        "rss_idle_mb": server.idle_rss / 2**20,
        "rss_start_mb": rss_start / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "rss_growth_mb": (rss_end - rss_start) / 2**20,
        "rss_max_sample_mb": max(samples or [rss_end]) / 2**20,
        "rss_peak_mb": rss_bytes(server.pid, "VmHWM") / 2**20,
        "rss_peak_over_idle_mb": (rss_bytes(server.pid, "VmHWM") - server.idle_rss) / 2**20,
        "healthz_after": healthz(server.host, server.port),
        "server_alive": server.alive(),
    }


# ---------------------------------------------------------------- the properties the fuzzers check
CATEGORY_BY_KIND = {  # an ImageError's kind -> the name its refusals are counted under
    ImageKind.TOO_BIG: "bomb limit",  # over the pixel limit, or a JPEG over the scan limit
    ImageKind.FORMAT: "other format",
    ImageKind.NOT_IMAGE: "not an image",
    ImageKind.CORRUPT: "corrupt header",
    ImageKind.UNDECODABLE: "cannot decode",
    ImageKind.EMPTY: "empty",
    ImageKind.NO_PIXELS: "no pixels",
    ImageKind.UNREADABLE: "unreadable",
}


# `POST /predict` refusals, by the HTTP status (catdog.serve.STATUS_BY_KIND); the JSON answer names no kind.
CATEGORY_BY_STATUS = {400: "400 unusable image", 413: "413 too large", 415: "415 other format"}


def refusal(exc) -> str:
    """The category of an ImageError, by its kind (never by its message)."""
    return CATEGORY_BY_KIND[exc.kind]


def check_decoded(mutant, max_pixels: int, decoder) -> str:
    """Run `decoder(mutant)` (open_rgb of the bytes, or decode of a file) and check the contract:
    an RGB image within the pixel limit, or ImageError with a one-line reason; a header that
    declares more than `max_pixels`, or a JPEG of more than MAX_JPEG_SCANS scans, is refused as a
    bomb before decoding. Returns "accepted" or the refusal's category (by the ImageError's kind);
    raises AssertionError (with the mutant's note) otherwise."""
    where = f"{mutant.kind} ({mutant.note}) of {mutant.base.name}"
    try:
        out = decoder(mutant)
    except ImageError as exc:
        reason = str(exc)
        assert reason and "\n" not in reason and "; " in reason, f"{where}: reason not one line with what to do: {reason!r}"
        assert exc.kind in CATEGORY_BY_KIND, f"{where}: unknown kind {exc.kind!r}: {reason}"
        if (mutant.declared_pixels or 0) > max_pixels:
            assert exc.kind != ImageKind.UNDECODABLE, f"{where}: {mutant.declared_pixels:,} pixels reached the decoder: {reason}"
        if (mutant.scans or 0) > MAX_JPEG_SCANS:
            assert exc.kind == ImageKind.TOO_BIG, f"{where}: {mutant.scans:,} scans, refused as {exc.kind}: {reason}"
        if mutant.impossible:
            assert exc.kind == ImageKind.CORRUPT, f"{where}: an impossible size, refused as {exc.kind}: {reason}"
        return refusal(exc)
    pixels = out.size[0] * out.size[1] if hasattr(out, "size") and not hasattr(out, "shape") else out.shape[0] * out.shape[1]
    assert (mutant.declared_pixels or 0) <= max_pixels, f"{where}: declared {mutant.declared_pixels:,} pixels, yet decoded"
    assert (mutant.scans or 0) <= MAX_JPEG_SCANS, f"{where}: {mutant.scans:,} scans, yet decoded"
    assert 0 < pixels <= max_pixels, f"{where}: decoded {pixels} pixels"
    if hasattr(out, "mode"):
        assert out.mode == "RGB", f"{where}: mode {out.mode}"
    return "accepted"


def check_answer(mutant, answer: Answer, max_pixels: int, grid: int) -> str:
    """The contract of `POST /predict` for a hostile upload: 200 with a label, probabilities that
    sum to 1 and a grid x grid CAM, or 400/413/415 with a one-line reason (413 for a declared
    pixel count over the limit and for a JPEG over the scan limit); never 5xx, a dropped
    connection or a non-JSON answer. Returns "accepted" or the refusal's category by its status
    (CATEGORY_BY_STATUS)."""
    where = f"{mutant.kind} ({mutant.note}) of {mutant.base.name}"
    assert not answer.failure, f"{where}: {answer.failure}"
    assert answer.status in (200, 400, 413, 415), f"{where}: status {answer.status}: {answer.body}"
    if answer.status == 200:
        body = answer.body
        assert body["label"] in ("cat", "dog") and abs(sum(body["probabilities"].values()) - 1) < 1e-3, f"{where}: {body}"
        assert np.asarray(body["cam"]).shape == (grid, grid), f"{where}: cam {np.asarray(body['cam']).shape}"
        assert (mutant.declared_pixels or 0) <= max_pixels, f"{where}: declared {mutant.declared_pixels:,} pixels, yet answered 200"
        assert (mutant.scans or 0) <= MAX_JPEG_SCANS, f"{where}: {mutant.scans:,} scans, yet answered 200"
        return "accepted"
    assert answer.one_line_reason, f"{where}: {answer.status} without a one-line reason: {answer.body}"
    if mutant.impossible:  # a side no format holds: corrupt, not a bomb to allow with a higher limit
        assert answer.status == 400, f"{where}: an impossible size, answered {answer.status}: {answer.body}"
    elif (mutant.declared_pixels or 0) > max_pixels:
        assert answer.status == 413, f"{where}: declared {mutant.declared_pixels:,} pixels, answered {answer.status}: {answer.body}"
    if (mutant.scans or 0) > MAX_JPEG_SCANS:
        assert answer.status == 413, f"{where}: {mutant.scans:,} scans, answered {answer.status}: {answer.body}"
    return CATEGORY_BY_STATUS[answer.status]
