"""A short soak of a real `catdog serve` process: a few hundred uploads at 16 concurrent, a third
of them hostile (tools/mutations.py's fixed set, plus the two largest photos the pixel limit lets
through). No 5xx, no dropped connection, /healthz 200 after, and memory flat and bounded.
`python -m bench soak` runs the long version (2,000 requests) and writes bench/results/soak.json."""

from __future__ import annotations

import json

import pytest

from catdog.serve import MAX_UPLOAD_PIXELS
from conftest import REFERENCE, TRAIN, needs_shared
from tools.faults import HAVE_PROC, MEMORY_BOUND_MB, Server, soak
from tools.mutations import hostile_set, largest_legal, load_bases

REQUESTS, CONCURRENCY = 300, 16
FLAT_MB = 100  # RSS growth allowed between the end of warm-up and the end of the soak


@needs_shared
@pytest.mark.skipif(not HAVE_PROC, reason="the server's memory is read from /proc (Linux only)")
def test_soak_with_a_third_hostile(subset_artefacts, tmp_path):
    bases = load_bases([TRAIN / "cat.1.jpg", TRAIN / "dog.3.jpg"])
    hostile = [m.data for m in hostile_set(bases, MAX_UPLOAD_PIXELS)]
    hostile += [largest_legal(TRAIN / "dog.3.jpg", MAX_UPLOAD_PIXELS, fmt) for fmt in ("JPEG", "PNG")]
    clean = [p.read_bytes() for p in sorted(REFERENCE.glob("test_5*.jpg"))[:10]]
    server = Server(subset_artefacts, threads=8)
    try:
        report = soak(server, clean, hostile, REQUESTS, CONCURRENCY, warmup=CONCURRENCY)
        log = server.log()
    finally:
        server.stop()
    (tmp_path / "soak.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    assert report["failures"] == 0, report["failure_examples"]
    assert report["server_alive"] and report["healthz_after"] == 200
    assert report["statuses"].get("200", 0) >= 2 * REQUESTS // 3  # every clean photo, and some hostile ones
    assert "Traceback" not in log, log[-3000:]
    assert report["rss_growth_mb"] < FLAT_MB, report
    assert report["rss_peak_over_idle_mb"] < MEMORY_BOUND_MB, report
