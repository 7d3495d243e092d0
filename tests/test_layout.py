"""The house rules a newcomer relies on, read from the source itself: stages talk through their
packages and catdog.contract, never through each other's private modules, and each contract
(output names, tolerances, manifest reading) is defined once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CATDOG = Path(__file__).resolve().parents[1] / "catdog"
# the modules of a stage another stage may import besides the stage's package itself
PUBLIC = {
    "data": {"limits"},  # the CLI reads MAX_PIXELS without numpy
    "features": {"distributed", "specs", "stage"},  # the Ray twins; backbone names for the parser; the command
    "training": {"finetune", "settings", "summary", "stage"},
    "report": {"facts"},
    "runtime": {"mlprogram"},  # catdog's Core ML interpreter, for the mixed-precision analysis
    "export": {"formats", "stage"},
    "parity": {"stage"},
}


def _stage(path: Path, root: Path) -> str:
    rel = path.relative_to(root).parts
    return rel[0].removesuffix(".py")


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("catdog."):
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("catdog."):
                    yield node.lineno, alias.name, []


def stage_import_violations(root: Path = CATDOG) -> list[str]:
    """'file:line imports catdog.X.Y' for each import of another stage's private module or name."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "_vendor" in path.parts:
            continue
        stage = _stage(path, root)
        for line, module, names in _imports(path):
            parts = module.split(".")
            other = parts[1]
            if other == stage:
                continue
            if len(parts) > 2 and parts[2] not in PUBLIC.get(other, set()):
                found.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
            found += [f"{path.relative_to(root.parent)}:{line} imports {module}.{n}" for n in names if n.startswith("_")]
    return found


def test_no_stage_imports_another_stages_private_module():
    assert stage_import_violations() == []


def test_the_rule_catches_a_private_import(tmp_path):
    (tmp_path / "catdog" / "parity").mkdir(parents=True)
    (tmp_path / "catdog" / "parity" / "x.py").write_text("from catdog.export.sensitivity import analyse\nfrom catdog.export import _kept\n")
    found = stage_import_violations(tmp_path / "catdog")
    assert found == ["catdog/parity/x.py:1 imports catdog.export.sensitivity", "catdog/parity/x.py:2 imports catdog.export._kept"]


def _definitions(pattern: str) -> list[str]:
    hits = []
    for path in sorted(CATDOG.rglob("*.py")):
        if "_vendor" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(pattern, line):
                hits.append(f"{path.relative_to(CATDOG.parent)}:{number}")
    return hits


def test_each_contract_is_defined_once():
    def files(pattern: str) -> list[str]:
        return [d.rsplit(":", 1)[0] for d in _definitions(pattern)]

    assert files(r"^(PROBABILITIES|CAM|INPUT_NAME|LABELS) = ") == ["catdog/contract.py"] * 4
    assert files(r"^TOLERANCES = ") == ["catdog/contract.py"]
    assert files(r"^(PET|NEITHER|PET_THRESHOLD) = ") == ["catdog/contract.py"] * 3
    assert files(r"^def (sha256_path|check_artefact)\(") == ["catdog/contract.py"] * 2  # what the manifest's sha256 means
    assert _definitions(r"^def load_manifest\(") == [_definitions(r"^def load_manifest\(")[0]]
    assert _definitions(r"^def load_manifest\(")[0].startswith("catdog/contract.py:")
    assert _definitions(r"^def cam_grid\(")[0].startswith("catdog/contract.py:") and len(_definitions(r"^def cam_grid\(")) == 1


def test_make_alone_lists_the_targets_it_names():
    """`make` with no target installed the package and stopped without a word on what next; it now
    prints the targets, each a real one of the Makefile, and installs nothing."""
    import subprocess

    repo = CATDOG.parent
    out = subprocess.run(["make", "-s", "--no-print-directory"], cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    named = re.findall(r"^make (\S+)", out.stdout, flags=re.M) + re.findall(r"; +make (\w[\w-]*)", out.stdout)
    assert {"run", "test", "test-fast", "clean"} <= set(named), out.stdout
    targets = set(re.findall(r"^([\w-]+):", (repo / "Makefile").read_text(), flags=re.M))
    assert set(named) <= targets, set(named) - targets
    dry = subprocess.run(["make", "-n"], cwd=repo, capture_output=True, text=True, timeout=60).stdout
    assert "-m venv" not in dry and "install -q" not in dry, dry  # echo lines only
