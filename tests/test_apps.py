"""The iOS and Android apps against a real ART_DIR: the manifest fields and output names their
code reads exist in the artefacts, the scripts that copy models in work, and the CI workflow
checks each platform. (Their pure-logic packages are compiled and tested by `make apps-test`
against tests/golden/apps.json; no Xcode or Android SDK here: the app layers build on GitHub.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from catdog.contract import sha256_path
from conftest import REPO, needs_shared

IOS, ANDROID = REPO / "ios_app", REPO / "android_demo"
SWIFT_MANIFEST = IOS / "CatDogCore" / "Sources" / "CatDogCore" / "Manifest.swift"
KOTLIN_MANIFEST = ANDROID / "core" / "src" / "main" / "kotlin" / "catdog" / "core" / "Manifest.kt"
# JSON keys each app parses: path in manifest.json -> literal the code must contain
SWIFT_KEYS = ["manifest_version", "backbone", "labels", "input", "shape", "channel_order", "value_range", "outputs",
              "name", "artefacts", "file", "format", "precision", "sha256", "pet_threshold"]
KOTLIN_KEYS = ["manifest_version", "labels", "input", "shape", "channel_order", "value_range", "outputs", "name",
               "artefacts", "file", "format", "precision", "pet_threshold"]


def _keys(obj, out=None) -> set[str]:
    out = set() if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(k)
            _keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _keys(v, out)
    return out


@needs_shared
def test_manifest_has_what_the_apps_read(subset_artefacts):
    manifest = json.loads((subset_artefacts / "manifest.json").read_text())
    present = _keys(manifest)
    swift, kotlin = SWIFT_MANIFEST.read_text(), KOTLIN_MANIFEST.read_text()
    for key in SWIFT_KEYS:
        assert re.search(rf"\b{key}\b", swift), f"Swift code does not read {key}"
        assert key in present, f"manifest lacks {key}, which the iOS app reads"
    for key in KOTLIN_KEYS:
        assert f'"{key}"' in kotlin, f"Kotlin code does not read {key}"
        assert key in present, f"manifest lacks {key}, which the Android app reads"
    # the values both apps require (their problem() checks)
    assert manifest["manifest_version"] == 1 and manifest["labels"] == ["cat", "dog"]
    assert manifest["input"]["shape"] == [1, 224, 224, 3] and manifest["input"]["channel_order"] == "RGB"
    assert manifest["input"]["value_range"] == [0.0, 255.0]
    assert {o["name"] for o in manifest["outputs"]} == {"probabilities", "cam", "pet"}
    assert 0.0 < manifest["pet_threshold"] < 1.0
    from catdog.contract import MANIFEST_VERSION  # the one the apps' add_model.sh checks against

    assert f"supportedVersion = {MANIFEST_VERSION}" in swift and f"SUPPORTED_VERSION = {MANIFEST_VERSION}" in kotlin


def test_apps_take_the_cam_grid_from_the_model():
    """A 288 model has 9x9 maps (test_size_fusion checks its manifest says [1, 9, 9, 2]): the apps
    read the CAM by its shape (Core ML: the output's own shape; TFLite: the manifest's `cam` shape),
    never a fixed 7x7."""
    swift, kotlin = SWIFT_MANIFEST.read_text(), KOTLIN_MANIFEST.read_text()
    assert "camSide" in swift and "camSide" in kotlin and "camShape" in kotlin
    core = [IOS / "CatDogCore/Sources/CatDogCore/CAM.swift", IOS / "CatDogCore/Sources/CatDogCore/Analysis.swift",
            ANDROID / "core/src/main/kotlin/catdog/core/Cam.kt", ANDROID / "core/src/main/kotlin/catdog/core/Analysis.kt"]
    apps = [IOS / "CatDog/Classifier.swift", ANDROID / "app/src/main/java/catdog/demo/Classifier.kt"]
    for source in core + apps:
        text = source.read_text()
        assert not re.search(r"side: Int = \d|Array\(7\)|\b[79] \* [79]\b", text), f"{source} assumes a fixed CAM size"
    assert "camShape: shaped.shape" in apps[0].read_text()  # Core ML: MLShapedArray's shape
    assert "manifest.camShape" in apps[1].read_text() and "manifest.camShape" in core[3].read_text()
    assert "camShape[1]" in core[1].read_text()


@needs_shared
def test_output_names_in_the_code_are_the_artefacts(subset_artefacts):
    import coremltools as ct
    from ai_edge_litert.interpreter import Interpreter

    swift, kotlin = SWIFT_MANIFEST.read_text(), KOTLIN_MANIFEST.read_text()
    swift_names = set(re.findall(r'static let (?:probabilities|cam|pet) = "(\w+)"', swift))
    kotlin_names = set(re.findall(r'const val (?:PROBABILITIES|CAM|PET) = "(\w+)"', kotlin))
    assert swift_names == kotlin_names == {"probabilities", "cam", "pet"}
    tflite = Interpreter(str(subset_artefacts / "catdog_mobilenet_v2_fp32.tflite")).get_signature_list()["serving_default"]
    assert set(tflite["outputs"]) == kotlin_names and tflite["inputs"] == ["image"]
    assert "runSignature" in (ANDROID / "app/src/main/java/catdog/demo/Classifier.kt").read_text()
    spec = ct.utils.load_spec(str(subset_artefacts / "catdog_mobilenet_v2_fp16.mlpackage"))
    coreml_outputs = {o.name for o in spec.description.output}
    assert swift_names <= coreml_outputs and spec.description.input[0].name == "image"


@needs_shared
@pytest.mark.parametrize(
    "app,expected",
    [(IOS, ["manifest.json", "catdog_mobilenet_v2_fp16.mlpackage"]), (ANDROID, ["manifest.json", "catdog_mobilenet_v2_fp32.tflite"])],
)
def test_add_model_scripts_copy_the_artefacts(subset_artefacts, tmp_path, app, expected):
    copy = tmp_path / app.name
    shutil.copytree(app, copy, ignore=shutil.ignore_patterns("Model", "assets"))
    (tmp_path / "catdog").symlink_to(REPO / "catdog")  # the scripts run catdog.contract from the checkout they sit in
    result = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(subset_artefacts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dest = copy / "Model" if app == IOS else copy / "app" / "src" / "main" / "assets"
    assert sorted(p.name for p in dest.iterdir()) == sorted(expected)
    assert json.loads((dest / "manifest.json").read_text()) == json.loads((subset_artefacts / "manifest.json").read_text())
    bad = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode == 2 and "manifest.json not found" in bad.stderr
    bare = subprocess.run([str(copy / "scripts" / "add_model.sh")], capture_output=True, text=True)  # was bash's own line, exit 1
    assert bare.returncode == 2 and bare.stderr.strip() == "usage: add_model.sh ART_DIR (the folder catdog export wrote)"
    helped = subprocess.run([str(copy / "scripts" / "add_model.sh"), "--help"], capture_output=True, text=True)  # was "--help/manifest.json not found"
    assert helped.returncode == 0 and helped.stdout.strip() == "usage: add_model.sh ART_DIR (the folder catdog export wrote)"
    run_dir = tmp_path / "run"
    (run_dir / "artefacts").mkdir(parents=True)
    (run_dir / "artefacts" / "manifest.json").write_text("{}")
    given_run = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(run_dir)], capture_output=True, text=True)
    assert given_run.returncode == 2 and given_run.stderr.strip() == f"add_model: {run_dir} is a RUN_DIR; pass its ART_DIR, {run_dir}/artefacts"
    # called through a link (a ~/bin shortcut): the app beside the script is updated, macOS Finder's
    # .DS_Store in a package (added by opening it) does not count as a change to the model
    finder = tmp_path / "finder"
    shutil.copytree(subset_artefacts, finder)
    if (finder / expected[1]).is_dir():
        (finder / expected[1] / ".DS_Store").write_bytes(b"Bud1")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "add_model").symlink_to(copy / "scripts" / "add_model.sh")
    linked = subprocess.run([str(tmp_path / "bin" / "add_model"), str(finder)], capture_output=True, text=True)
    assert linked.returncode == 0 and str(dest) in linked.stdout, linked.stderr
    # An artefact changed since export (here cut short, as an interrupted copy leaves it) is refused by
    # its sha256 in manifest.json, and the model added before stays.
    cut = tmp_path / "cut"
    shutil.copytree(subset_artefacts, cut)
    chosen = cut / expected[1]
    target = next(p for p in sorted(chosen.rglob("*")) if p.is_file() and p.stat().st_size > 1000) if chosen.is_dir() else chosen
    target.write_bytes(target.read_bytes()[:1000])
    refused = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(cut)], capture_output=True, text=True)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip() == (f"add_model: {chosen}: not the file manifest.json lists (sha256 differs: changed, truncated or "
                                      "half-copied since export); copy the ART_DIR again or run `catdog export` again")
    assert sorted(p.name for p in dest.iterdir()) == sorted(expected)
    assert sha256_path(dest / expected[1]) == sha256_path(subset_artefacts / expected[1])
    leftovers = [p.name for p in dest.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def _tree(folder) -> dict:
    """Every file under `folder`, by relative path, with its sha256: what an app bundles."""
    return {str(p.relative_to(folder)): sha256_path(p) for p in sorted(folder.rglob("*")) if p.is_file()}


REFUSE = "; the app would refuse it (its model is unchanged): run `catdog export` again with the catdog beside this app"


def _outputs(edit):
    return lambda m: m.update(outputs=[o for o in map(edit, m["outputs"]) if o is not None])


# A manifest edited so that the app's Manifest.problem() refuses it, and what add_model.sh says (iOS, Android).
APP_REFUSES = {
    "no pet_threshold": (lambda m: m.pop("pet_threshold"), "no pet_threshold (an older catdog exported this model)"),
    "a newer version": (lambda m: m.update(manifest_version=2), "manifest version 2 is not 1, the version this app reads"),
    "a threshold in per cent": (lambda m: m.update(pet_threshold=82.6), "pet_threshold 82.6 is not within 0..1"),
    "a NaN threshold": (lambda m: m.update(pet_threshold=float("nan")),
                        ("it holds NaN or Infinity, which the iOS app cannot read", "pet_threshold nan is not within 0..1")),
    "no labels": (lambda m: m.pop("labels"), "labels missing or not a list of names"),
    "one label": (lambda m: m.update(labels=["cat"]), "expected 2 labels, found 1"),
    "no pet output": (_outputs(lambda o: None if o["name"] == "pet" else o), "output pet missing"),
    "grey input": (lambda m: m["input"].update(shape=[1, 224, 224, 1]), "input shape [1, 224, 224, 1] is not [1, N, N, 3]"),
    "input 0..1": (lambda m: m["input"].update(value_range=[0.0, 1.0]), "input range [0.0, 1.0] is not 0..255"),
    "3 CAM classes": (_outputs(lambda o: {**o, "shape": [1, 7, 7, 3]} if o["name"] == "cam" else o), "cam shape [1, 7, 7, 3] is not [1, G, G, 2]"),
}


@needs_shared
@pytest.mark.parametrize("app,dest,chosen,fmt", [(IOS, "Model", "catdog_mobilenet_v2_fp16.mlpackage", "coreml"),
                                                 (ANDROID, "app/src/main/assets", "catdog_mobilenet_v2_fp32.tflite", "tflite")])
def test_add_model_refuses_a_manifest_the_app_refuses(subset_artefacts, tmp_path, app, dest, chosen, fmt):
    """add_model.sh checked the artefact's sha256 but not what the app's Manifest.problem() requires:
    a manifest without pet_threshold, of version 2, with a threshold of 82.6 or NaN, without labels
    ... was installed (exit 0) over a working model, which the app then refused. Now each is refused
    in one line before anything is copied. And an artefact listed in a subfolder (uniform/NAME) was
    checked there but ART_DIR/NAME was copied: refused too."""
    copy = tmp_path / app.name
    shutil.copytree(app, copy, ignore=shutil.ignore_patterns("Model", "assets"))
    (tmp_path / "catdog").symlink_to(REPO / "catdog")
    dest = copy / dest
    added = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(subset_artefacts)], capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    working = _tree(dest)
    art = tmp_path / "art"
    art.mkdir()
    shutil.copy(subset_artefacts / "manifest.json", art)
    (shutil.copytree if (subset_artefacts / chosen).is_dir() else shutil.copy)(subset_artefacts / chosen, art / chosen)
    exported = json.loads((subset_artefacts / "manifest.json").read_text())
    cases = {name: (edit, said if isinstance(said, str) else said[fmt != "coreml"]) for name, (edit, said) in APP_REFUSES.items()}

    def subfolder(m):  # the chosen artefact listed (and sha256-checked) in uniform/, another file of its name on top
        (art / "uniform").mkdir(exist_ok=True)
        shutil.move(art / chosen, art / "uniform" / chosen)
        (shutil.copytree if (subset_artefacts / chosen).is_dir() else shutil.copy)(subset_artefacts / chosen, art / chosen)
        for f in [art / chosen] if (art / chosen).is_file() else [p for p in (art / chosen).rglob("*") if p.is_file()]:
            f.write_bytes(b"another model")
        next(a for a in m["artefacts"] if a["file"] == chosen)["file"] = f"uniform/{chosen}"

    cases["listed in a subfolder"] = (subfolder, f"its {fmt} artefact 'uniform/{chosen}' is not a file name in ART_DIR "
                                                 "(export lists the apps' artefacts at its top)")
    for name, (edit, said) in cases.items():
        manifest = json.loads(json.dumps(exported))
        edit(manifest)
        (art / "manifest.json").write_text(json.dumps(manifest))
        refused = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(art)], capture_output=True, text=True)
        assert (refused.returncode, refused.stderr) == (2, f"add_model: {art}/manifest.json: {said}{REFUSE}\n"), name
        assert _tree(dest) == working, name
        assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".")] == [], name
    # backbone is informative: neither app needs it (Manifest.swift required it until it was made optional)
    manifest = json.loads(json.dumps(exported))
    del manifest["backbone"]
    shutil.rmtree(art)
    shutil.copytree(subset_artefacts, art)
    (art / "manifest.json").write_text(json.dumps(manifest))
    taken = subprocess.run([str(copy / "scripts" / "add_model.sh"), str(art)], capture_output=True, text=True)
    assert taken.returncode == 0, taken.stderr
    assert json.loads((dest / "manifest.json").read_text()) == manifest


@needs_shared
@pytest.mark.parametrize("app,dest,chosen", [(IOS, "Model", "catdog_mobilenet_v2_fp16.mlpackage"),
                                             (ANDROID, "app/src/main/assets", "catdog_mobilenet_v2_fp32.tflite")])
def test_add_model_takes_a_read_only_art_dir(subset_artefacts, app, dest, chosen):
    """A read-only ART_DIR (a mounted share, a copy off a read-only disk): cp keeps its modes. The iOS
    script removed the old model first, then could not move the read-only package in (moving a folder
    rewrites its ".."): Model/ was left with only manifest.json, and a .Model.XXXX stage it could not
    remove was left beside it, not git-ignored. Run as a user other than root, whom modes do not stop."""
    import os
    import pwd
    import tempfile

    root = os.geteuid() == 0
    if root and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder stops no one here")
    work = Path(tempfile.mkdtemp(prefix="catdog-readonly-"))  # not pytest's tmp_path: another user must reach it
    try:
        copy = work / app.name
        shutil.copytree(app, copy, ignore=shutil.ignore_patterns("Model", "assets"))
        shutil.copytree(REPO / "catdog", work / "catdog", ignore=shutil.ignore_patterns("__pycache__"))
        if app == IOS:  # the committed README.md stays
            (copy / "Model").mkdir()
            shutil.copy(IOS / "Model" / "README.md", copy / "Model")
        art = work / "art"
        art.mkdir()
        shutil.copy(subset_artefacts / "manifest.json", art)
        (shutil.copytree if (subset_artefacts / chosen).is_dir() else shutil.copy)(subset_artefacts / chosen, art / chosen)
        as_user, env = [], None
        if root:
            nobody = pwd.getpwnam("nobody")
            subprocess.run(["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}", str(work)], check=True)
            as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(work)}  # root's PATH may hold folders nobody cannot read
        subprocess.run(["chmod", "-R", "a-w", str(art)], check=True)
        dest = copy / dest
        expected = sorted(["manifest.json", chosen] + (["README.md"] if app == IOS else []))
        for _ in range(2):  # into an empty app, then over the read-only-sourced model the first run added
            added = subprocess.run(as_user + [str(copy / "scripts" / "add_model.sh"), str(art)], capture_output=True, text=True, env=env)
            assert added.returncode == 0, added.stderr
            assert sorted(p.name for p in dest.iterdir()) == expected
            assert sha256_path(dest / chosen) == sha256_path(subset_artefacts / chosen)
            assert [p.name for p in dest.parent.iterdir() if p.name.startswith(".")] == []
        if (REPO / ".git").exists():  # a stage left by a killed run is no change to commit
            stages = ["ios_app/.Model.a1B2c3", "android_demo/app/src/main/.assets.a1B2c3"]
            ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", *stages], capture_output=True, text=True)
            assert ignored.stdout.split() == stages
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)])
        shutil.rmtree(work)


def test_app_jet_formula_matches_catdog_cam():
    """Both apps colour CAMs with r,g,b = clip(1.5 - |4t - k|), k = 3, 2, 1; catdog cam uses
    OpenCV's COLORMAP_JET. The two agree to within one level of 255."""
    t = np.linspace(0, 1, 256)
    formula = np.stack([np.clip(1.5 - np.abs(4 * t - k), 0, 1) for k in (3, 2, 1)], 1) * 255
    opencv = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]
    assert np.abs(formula - opencv).max() <= 1
    for source in (IOS / "CatDogCore/Sources/CatDogCore/CAM.swift", ANDROID / "core/src/main/kotlin/catdog/core/Cam.kt"):
        text = source.read_text()
        assert all(f"4 * t - {k})" in text for k in (3, 2, 1)), source


def test_the_ci_workflow_runs_each_platforms_checks():
    """.github/workflows/ci.yml (linted by actionlint in `make apps-test`): the Linux job runs .ci/run
    itself, macOS runs Core ML parity, swift test and the simulator build, Android the Gradle tasks."""
    import yaml

    jobs = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    assert set(jobs) == {"linux", "macos", "android"}
    runs = {name: "\n".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}
    assert jobs["linux"]["steps"][-1]["run"] == "bash .ci/run" and "make test" in (REPO / ".ci" / "run").read_text()
    assert jobs["macos"]["runs-on"].startswith("macos")
    for needed in ("catdog parity", '"coreml"', '"Core ML"', "interpreter_vs_coreml", "make -s art-dir", "ios_app/scripts/core_test.sh",
                   "xcodegen generate", "xcodebuild build", "iOS Simulator"):
        assert needed in runs["macos"], needed
    assert "runs/" not in runs["macos"]  # the ART_DIR comes from the Makefile's OUT, not a copy of it
    assert "./gradlew" in runs["android"] and all(t in runs["android"] for t in (":core:test", ":app:assembleDebug", ":app:lint"))
    assert (ANDROID / "gradlew").stat().st_mode & 0o111 and (ANDROID / "gradle" / "wrapper" / "gradle-wrapper.jar").is_file()
    assert "android.useAndroidX=true" in (ANDROID / "gradle.properties").read_text()
    assert 'compileOnly("org.json:json' in (ANDROID / "core" / "build.gradle.kts").read_text()


@pytest.mark.skipif(shutil.which("swift") is None, reason="no Swift toolchain: `make apps-test` says so too")
def test_swift_tests_build_again_after_the_repository_moved(tmp_path):
    """Swift's module cache records absolute paths: after the checkout moved (or was copied with its
    .build), every compile failed ("was compiled with module cache path …"). core_test.sh builds afresh."""
    first = tmp_path / "first"
    (first / "ios_app").mkdir(parents=True)
    shutil.copytree(IOS / "CatDogCore", first / "ios_app" / "CatDogCore", ignore=shutil.ignore_patterns(".build"))
    shutil.copytree(IOS / "scripts", first / "ios_app" / "scripts")
    shutil.copytree(REPO / "tests" / "golden", first / "tests" / "golden")
    built = subprocess.run(["bash", "ios_app/scripts/core_test.sh"], cwd=first, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0 and re.search(r"Executed [1-9]\d* tests, with 0 failures", built.stdout), built.stdout[-2000:] + built.stderr[-2000:]
    moved = first.rename(tmp_path / "moved")
    again = subprocess.run(["bash", "ios_app/scripts/core_test.sh"], cwd=moved, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "building afresh" in again.stdout and re.search(r"Executed [1-9]\d* tests, with 0 failures", again.stdout), \
        again.stdout[-2000:] + again.stderr[-2000:]
