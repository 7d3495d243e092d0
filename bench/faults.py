"""Hostile input and load, longer than the test suite runs them (`python -m bench fuzz | soak`).

fuzz: fresh random Hypothesis examples of every mutation kind (tools/mutations.py) against the
decoder (`open_rgb` on bytes and `decode` on a file), against `POST /predict` of a real
`catdog serve ART_DIR` process, and as files in a data folder given to `catdog features`; the same
properties as tests/test_fuzz.py. Prints outcomes per kind (refusals counted by the ImageError's kind
for the decoder, by the HTTP status for the server: tools/faults.py); writes bench/results/fuzz.json.

soak: `--requests` uploads (default 2,000) at `--concurrency` (16), a third hostile, against a
real `catdog serve ART_DIR`: latency, statuses, failures and the server's RSS over time; writes
bench/results/soak.json.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BASE_PHOTOS = ("cat.1.jpg", "dog.3.jpg", "cat.2.jpg", "dog.950.jpg")


def _hypothesis_run(kind: str, examples: int, seed: int, body) -> dict:
    """Run `body(mutant)` on `examples` random mutants of `kind`; count its outcomes, and stop at
    the first property it breaks (reported, with the mutant)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    outcomes: dict[str, int] = {}
    run = {"kind": kind, "examples": 0, "failure": ""}

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data):
        outcome = body(data)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    try:
        fuzz()
    except Exception as exc:  # a broken property: hypothesis re-raises it after shrinking
        run["failure"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    run["examples"] = sum(outcomes.values())
    run["outcomes"] = outcomes
    return run


def cmd_fuzz(args) -> int:
    """The fuzz table and fuzz.json; exit status 1 where a property broke, the server died or
    printed a traceback, or `catdog features` failed on the hostile folder (`make fuzz` fails)."""
    from tools.mutations import load_bases

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {seed} (python -m bench fuzz --seed {seed} repeats this run)")
    bases = load_bases([Path(args.data) / n for n in BASE_PHOTOS])
    scratch = Path(tempfile.mkdtemp(prefix="catdog-bench-fuzz-"))
    try:
        return _fuzz(args, seed, bases, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fuzz(args, seed: int, bases, scratch: Path) -> int:
    from hypothesis import strategies as st

    from bench.__main__ import save, table
    from catdog.data import MAX_PIXELS, decode, open_rgb
    from catdog.serve import MAX_UPLOAD_PIXELS
    from tools.faults import MEMORY_BOUND_MB, Server, check_answer, check_decoded, healthz, post, rss_bytes
    from tools.mutations import KINDS, hostile_set, mutants

    rows = []
    started = time.perf_counter()
    for kind in KINDS:

        def decoder(data, kind=kind):
            mutant = data.draw(mutants(bases, MAX_PIXELS, kinds=[kind]))
            outcome = check_decoded(mutant, MAX_PIXELS, lambda m: open_rgb(m.data))
            path = scratch / f"photo{mutant.suffix}"
            path.write_bytes(mutant.data)
            check_decoded(mutant, MAX_PIXELS, lambda m: decode(path))
            return outcome

        rows.append({"part": "decoder", **_hypothesis_run(kind, args.examples, seed, decoder)})
    server_note = ""
    art = Path(args.art)
    if (art / "manifest.json").is_file():
        server = Server(art)
        try:
            for kind in KINDS:

                def upload(data, kind=kind):
                    mutant = data.draw(mutants(bases, MAX_UPLOAD_PIXELS, kinds=[kind]))
                    multipart = data.draw(st.booleans())
                    answer = post(server.host, server.port, mutant.data, multipart)
                    return check_answer(mutant, answer, MAX_UPLOAD_PIXELS, grid=_grid(art))

                run = _hypothesis_run(kind, args.examples, seed, upload)
                run["healthz"] = healthz(server.host, server.port)
                rows.append({"part": "server", **run})
            server_peak = (rss_bytes(server.pid, "VmHWM") - server.idle_rss) / 2**20
            server_alive, traces = server.alive(), server.log().count("Traceback")
        finally:
            server.stop()
    else:
        server_note = f"{art}: no ART_DIR (make run first, or --art); POST /predict not fuzzed"
        print(server_note)
        server_peak, server_alive, traces = None, None, None
    folder = _data_folder_run(bases, hostile_set(bases, MAX_PIXELS), seed, args.folder_mutants, Path(args.data), scratch)
    for r in rows:
        r["refused"] = sum(v for k, v in r["outcomes"].items() if k != "accepted")
        r["accepted"] = r["outcomes"].get("accepted", 0)
        r["reasons"] = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()) if k != "accepted")
    table(rows, [("part", "part", ""), ("kind", "kind", ""), ("examples", "examples", "d"), ("accepted", "accepted", "d"),
                 ("refused", "refused", "d"), ("failure", "broken property", ""), ("reasons", "refusals by reason", "")])
    summary = {
        "seed": seed,
        "examples_per_kind": args.examples,
        "decoder_examples": sum(r["examples"] for r in rows if r["part"] == "decoder"),
        "server_requests": sum(r["examples"] for r in rows if r["part"] == "server"),
        "broken_properties": sum(bool(r["failure"]) for r in rows),
        # None, not true, where no server ran (no ART_DIR)
        "server_healthz_always_200": all(r.get("healthz") == 200 for r in rows if r["part"] == "server") if server_alive is not None else None,
        "server_alive_after": server_alive,
        "server_tracebacks": traces,
        "server_peak_over_idle_mb": server_peak,
        "server_memory_bound_mb": MEMORY_BOUND_MB,
        "server_note": server_note,
        "data_folder": folder,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "data_folder"}, indent=1))
    print(f"data folder: {folder}")
    save("fuzz", rows, summary)
    return exit_status(f"fuzz (seed {seed})", [
        ("a broken property", summary["broken_properties"]),
        ("the server died", server_alive is False),
        ("the server printed a traceback", bool(traces)),
        ("/healthz was not always 200", summary["server_healthz_always_200"] is False),
        (f"catdog features exited {folder['exit']} on the hostile folder", folder["exit"] != 0),
        ("a hostile file was both used and rejected, or neither", folder.get("neither_or_both", 0) > 0),
    ])


def exit_status(part: str, checks: list[tuple[str, bool]]) -> int:
    """1, with a line naming what failed, where any (what, failed) of `checks` failed; else 0."""
    failed = [what for what, bad in checks if bad]
    if failed:
        print(f"bench: {part} failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _grid(art: Path) -> int:
    manifest = json.loads((art / "manifest.json").read_text())
    return int(manifest["input"]["shape"][1]) // 32


def _data_folder_run(bases, fixed, seed: int, n: int, photos: Path, scratch: Path) -> dict:
    """`catdog features` on 8 real photos and `n` seeded mutants plus the fixed hostile set."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from catdog.data import MAX_PIXELS
    from catdog.features import load_features
    from tools.mutations import mutants

    drawn = []

    @hseed(seed)
    @settings(max_examples=1, phases=[Phase.generate], database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(mutants(bases, MAX_PIXELS), min_size=n, max_size=n))
    def draw(ms):
        drawn[:] = ms

    draw()
    clean = [f"{label}.{n}.jpg" for label in ("cat", "dog") for n in range(4)]
    data = scratch / "data"
    data.mkdir()
    for name in clean:
        (data / name).write_bytes((photos / name).read_bytes())
    named = {}
    for i, m in enumerate(drawn + fixed):
        name = f"{('cat', 'dog')[i % 2]}.{5000 + i}{m.suffix}"
        (data / name).write_bytes(m.data)
        named[name] = m
    out = scratch / "features.h5"
    proc = subprocess.run([sys.executable, "-m", "catdog.cli", "features", str(data), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not (scratch / "rejected.csv").is_file():
        return {"files": len(named) + len(clean), "exit": proc.returncode, "output": proc.stdout[-2000:] + proc.stderr[-2000:]}
    with open(scratch / "rejected.csv", newline="") as f:
        rejected = [Path(r["file"]).name for r in csv.DictReader(f)]
    used = set(load_features(out).names) if proc.returncode == 0 else set()
    return {
        "files": len(named) + len(clean),
        "mutants": len(named),
        "exit": proc.returncode,
        "rejected": len(rejected),
        "named_twice": len(rejected) - len(set(rejected)),
        "mutants_used": sum(name in used for name in named),
        "neither_or_both": sum((name in used) == (name in rejected) for name in named),
        "clean_used": sum(name in used for name in clean),
    }


def cmd_soak(args) -> int:
    """The soak table and soak.json; exit status 1 where a request failed, /healthz was not 200
    after it, or the server's peak RSS went over the bound (`make soak` fails)."""
    from bench.__main__ import save, table
    from catdog.serve import MAX_UPLOAD_PIXELS
    from tools.faults import MEMORY_BOUND_MB, Server, soak
    from tools.mutations import hostile_set, largest_legal, load_bases

    art = Path(args.art)
    if not (art / "manifest.json").is_file():
        raise SystemExit(f"{art}: no ART_DIR; run `make run` first or pass --art ART_DIR")
    data = Path(args.data)
    bases = load_bases([data / n for n in BASE_PHOTOS[:2]])
    hostile = [m.data for m in hostile_set(bases, MAX_UPLOAD_PIXELS)]
    hostile += [largest_legal(data / "dog.3.jpg", MAX_UPLOAD_PIXELS, fmt) for fmt in ("JPEG", "PNG")]
    reference = Path(args.data).parents[1] / "reference"
    clean = [p.read_bytes() for p in sorted(reference.glob("test_5*.jpg"))]
    server = Server(art)
    try:
        report = soak(server, clean, hostile, args.requests, args.concurrency, warmup=args.concurrency)
    finally:
        server.stop()
    report["memory_bound_mb"] = MEMORY_BOUND_MB
    report["hostile_kinds"] = len(hostile)
    rows = [{"requests": report["requests"], "concurrency": report["concurrency"], "hostile": report["hostile"],
             "failures": report["failures"], "rps": report["requests_per_s"], "clean_p50": report["clean_p50_ms"],
             "clean_p95": report["clean_p95_ms"], "hostile_p50": report["hostile_p50_ms"], "hostile_p95": report["hostile_p95_ms"],
             "idle": report["rss_idle_mb"], "start": report["rss_start_mb"], "end": report["rss_end_mb"],
             "peak": report["rss_peak_mb"]}]
    table(rows, [("requests", "requests", "d"), ("concurrency", "concurrent", "d"), ("hostile", "hostile", "d"),
                 ("failures", "failures", "d"), ("rps", "req/s", ".1f"), ("clean_p50", "clean p50 ms", ".0f"),
                 ("clean_p95", "clean p95 ms", ".0f"), ("hostile_p50", "hostile p50 ms", ".0f"),
                 ("hostile_p95", "hostile p95 ms", ".0f"), ("idle", "RSS idle MB", ".0f"), ("start", "after warm-up", ".0f"),
                 ("end", "RSS end MB", ".0f"), ("peak", "RSS peak MB", ".0f")])
    print(f"statuses {report['statuses']}; /healthz after: {report['healthz_after']}; "
          f"RSS growth after warm-up {report['rss_growth_mb']:+.0f} MB; peak over idle {report['rss_peak_over_idle_mb']:.0f} MB "
          f"(bound {MEMORY_BOUND_MB} MB)")
    save("soak", rows, report)
    return exit_status("soak", [
        (f"{report['failures']} failed request(s)", report["failures"]),
        (f"/healthz after: {report['healthz_after']}", report["healthz_after"] != 200),
        (f"peak RSS {report['rss_peak_over_idle_mb']:.0f} MB over idle, bound {MEMORY_BOUND_MB} MB", report["rss_peak_over_idle_mb"] > MEMORY_BOUND_MB),
    ])
