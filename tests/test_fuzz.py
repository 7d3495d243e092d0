"""Fuzzing with Hypothesis: mutated real photos (tools/mutations.py: bit flips, truncation, forged
JPEG/PNG/BMP dimensions, wrong magic bytes, absurd EXIF, huge ICC/palette/text chunks, zlib and
pixel bombs) against the decoder, against `POST /predict` of a real `catdog serve` process, and in
a data folder given to `catdog features`.

Bounded for CI: a fixed number of examples per kind, derandomized (the same examples every run).
`python -m bench fuzz` runs the same properties with fresh random examples for longer.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from catdog.data import MAX_PIXELS, ImageError, ImageKind, decode, open_rgb
from catdog.serve import MAX_UPLOAD_PIXELS
from conftest import HAVE_SHARED, TRAIN, copy_photos, kaggle_names, needs_shared
from tools.faults import HAVE_PROC, MEMORY_BOUND_MB, Server, check_answer, check_decoded, healthz, post, rss_bytes
from tools.mutations import KINDS, hostile_set, load_bases, mutants

BASE_PHOTOS = ("cat.1.jpg", "dog.3.jpg", "cat.2.jpg", "dog.950.jpg")
BASES = load_bases([TRAIN / n for n in BASE_PHOTOS]) if HAVE_SHARED else []
CI = settings(
    deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
DECODER_EXAMPLES = 30  # per kind
SERVER_EXAMPLES = 20  # per kind
_scratch = Path(tempfile.mkdtemp(prefix="catdog-fuzz-"))


@needs_shared
@pytest.mark.parametrize("kind", KINDS)
@settings(CI, max_examples=DECODER_EXAMPLES)
@given(data=st.data())
def test_decoder_holds_on_mutated_photos(kind, data):
    """open_rgb (bytes, as an upload) and decode (a file named after its base format) return an
    RGB image within the pixel limit or raise ImageError with a one-line reason; bombs never reach
    the decoder."""
    mutant = data.draw(mutants(BASES, MAX_PIXELS, kinds=[kind]))
    check_decoded(mutant, MAX_PIXELS, lambda m: open_rgb(m.data))
    path = _scratch / f"photo{mutant.suffix}"
    path.write_bytes(mutant.data)
    check_decoded(mutant, MAX_PIXELS, lambda m: decode(path))


@pytest.fixture(scope="module")
def server(subset_artefacts):
    s = Server(subset_artefacts, threads=8)
    yield s
    s.stop()


@needs_shared
@pytest.mark.parametrize("kind", KINDS)
def test_predict_holds_on_mutated_photos(server, kind):
    """Every mutated upload gets 200 or 400/413/415 with a one-line reason, never 5xx or a dropped
    connection; afterwards /healthz is 200 and the process is alive."""
    seen: dict[str, int] = {}

    @settings(CI, max_examples=SERVER_EXAMPLES)
    @given(data=st.data(), multipart=st.booleans())
    def fuzz(data, multipart):
        mutant = data.draw(mutants(BASES, MAX_UPLOAD_PIXELS, kinds=[kind]))
        outcome = check_answer(mutant, post(server.host, server.port, mutant.data, multipart), MAX_UPLOAD_PIXELS, grid=7)
        seen[outcome] = seen.get(outcome, 0) + 1

    fuzz()
    print(f"{kind}: {seen}")
    assert server.alive() and healthz(server.host, server.port) == 200
    assert "Traceback" not in server.log(), server.log()[-3000:]
    if HAVE_PROC:
        assert rss_bytes(server.pid, "VmHWM") - server.idle_rss < MEMORY_BOUND_MB * 2**20


@needs_shared
@settings(CI, max_examples=1, phases=[Phase.generate])
@given(drawn=st.lists(mutants(BASES, MAX_PIXELS), min_size=48, max_size=48))
def test_mutated_files_in_a_data_folder_are_each_rejected_once(drawn):
    """`catdog features` on real photos mixed with mutants (48 drawn + the fixed hostile set):
    exit 0, every mutant either used or named exactly once in rejected.csv, bombs rejected."""
    from catdog.cli import main
    from catdog.features import load_features

    root = Path(tempfile.mkdtemp(prefix="catdog-fuzz-data-", dir=_scratch))
    data = copy_photos(root / "data", kaggle_names("cat", range(4)) + kaggle_names("dog", range(4)))
    named = {}
    for i, mutant in enumerate(drawn + hostile_set(BASES, MAX_PIXELS)):
        name = f"{('cat', 'dog')[i % 2]}.{5000 + i}{mutant.suffix}"
        (data / name).write_bytes(mutant.data)
        named[name] = mutant
    out = root / "features.h5"
    assert main(["features", str(data), "--out", str(out)]) == 0
    with open(root / "rejected.csv", newline="") as f:
        rows = [(Path(r["file"]).name, r["reason"]) for r in csv.DictReader(f)]
    rejected = [name for name, _ in rows]
    used = set(load_features(out).names)
    assert len(rejected) == len(set(rejected)), "a file named twice in rejected.csv"
    assert set(kaggle_names("cat", range(4)) + kaggle_names("dog", range(4))) <= used
    for name, mutant in named.items():
        assert (name in used) != (name in rejected), f"{name} ({mutant.kind}: {mutant.note}) used={name in used}"
    for name, reason in rows:
        assert reason and "\n" not in reason
        if (named[name].declared_pixels or 0) > MAX_PIXELS:  # refused for its size (or as corrupt: a size no format holds)
            with pytest.raises(ImageError) as err:
                decode(data / name)
            kind = ImageKind.CORRUPT if named[name].impossible else ImageKind.TOO_BIG
            assert err.value.kind == kind and reason == str(err.value), (name, named[name].note, reason)
    print(f"{len(named)} mutants: {len(rejected)} rejected, {len(named) - len(rejected)} used")


@needs_shared
def test_every_answer_is_one_line_json(server):
    """Routes, methods, other formats and a chunked upload with no length all answer JSON."""
    import http.client
    import io

    from PIL import Image

    def ask(method: str, path: str, body=None, headers=None, chunked: bool = False) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    gif = io.BytesIO()
    Image.open(TRAIN / "cat.1.jpg").convert("P").save(gif, format="GIF")
    cases = [
        (ask("GET", "/nope"), 404, "Not Found"),
        (ask("GET", "/predict"), 405, "Method Not Allowed"),
        (ask("POST", "/predict", gif.getvalue()), 415, "content is GIF"),
        (ask("POST", "/predict", iter([b"\xff" * 2**20] * 12), {"Content-Type": "image/jpeg"}, chunked=True), 413, "byte limit"),
    ]
    for (status, body), expected, words in cases:
        assert status == expected and words in body["error"] and "\n" not in body["error"], (expected, status, body)
    assert healthz(server.host, server.port) == 200


@needs_shared
def test_bench_fuzz_fails_when_a_property_breaks(tmp_path, monkeypatch, capsys):
    """`python -m bench fuzz` (`make fuzz`) printed "broken property" rows and exited 0: it now
    exits 1 and says why, and leaves no scratch folder behind; a count under 1 is refused as the
    arguments are read (it was a ZeroDivisionError after the work)."""
    import argparse
    import subprocess
    import sys

    import bench.__main__ as bench_main
    import tools.faults
    from bench.faults import cmd_fuzz
    from conftest import REPO

    def broken(*args, **kwargs):
        raise AssertionError("a property broken on purpose")

    monkeypatch.setattr(tools.faults, "check_decoded", broken)
    monkeypatch.setattr(bench_main, "RESULTS", tmp_path / "results")  # not the repository's bench/results
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its scratch folder goes
    args = argparse.Namespace(seed=1, data=str(TRAIN), art=str(tmp_path / "no-art-dir"), examples=1, folder_mutants=2)
    assert cmd_fuzz(args) == 1
    err = capsys.readouterr().err
    assert "bench: fuzz (seed 1) failed: a broken property" in err
    assert json.loads((tmp_path / "results" / "fuzz.json").read_text())["broken_properties"] > 0
    assert not list(tmp_path.glob("catdog-bench-fuzz-*")), "the scratch folder was left"
    refused = subprocess.run([sys.executable, "-m", "bench", "latency", "--runs", "0"], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and "argument --runs: 0 is under 1; give 1 or more" in refused.stderr


def test_bench_tables_stay_in_line_and_name_what_was_kept(capsys):
    """Every bench table was 10 characters a column: a runtime's name ("tflite xnnpack 1t") or an
    artefact's pushed the rest of its row out of line. An int8 artefact with no layer kept float32
    read "mixed (0 fp32)"."""
    from bench.__main__ import _mixed, table

    rows = [{"runtime": "keras predict_on_batch", "precision": "fp32", "median_ms": 12.3456},
            {"runtime": "tflite xnnpack 1t", "precision": "int8 mixed (none fp32)", "median_ms": 1234.5},
            {"runtime": "onnxruntime 2t", "precision": None, "median_ms": None}]
    table(rows, [("runtime", "runtime", ""), ("precision", "precision", ""), ("median_ms", "median ms", ".2f")])
    lines = capsys.readouterr().out.splitlines()
    assert len({len(line) for line in lines}) == 1, lines  # every row as wide: the columns line up
    assert [line.index("fp32") for line in lines[1:2]] == [lines[0].index("precision")]  # text left-aligned under its header
    assert lines[1].endswith("12.35") and lines[2].endswith("1234.50") and lines[3].endswith("-")  # numbers right-aligned
    assert _mixed({"file": "m_int8.tflite", "precision": "int8", "kept_float32": []}) == "mixed (none fp32)"
    assert _mixed({"file": "m_int8.tflite", "precision": "int8", "kept_float32": ["a", "b"]}) == "mixed (2 layers fp32)"
    assert _mixed({"file": "uniform/m_int8.tflite", "precision": "int8"}) == "uniform"
