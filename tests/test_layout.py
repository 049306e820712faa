"""The house rules of the layout hold: imports run one way, the engine is Dagster-free, files stay one room."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def _modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Every module name an import statement in `path` names (at any depth, lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["assets", "resources", "synthdata"])
def test_nothing_below_the_code_location_imports_it(package):
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imported(p) if n.split(".")[0] == "dagster_project")
        for p in _modules(package)
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_engine_never_imports_dagster():
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imported(p) if n.split(".")[0] in {"dagster", "assets", "resources", "dagster_project"})
        for p in _modules("synthdata")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_every_module_holds_one_room():
    """Past MAX_LINES a module must say at its top why it is one file (a line starting "One file:")."""
    too_long = []
    for p in _modules("synthdata", "assets", "resources", "dagster_project"):
        text = p.read_text()
        reason = "\n" + (ast.get_docstring(ast.parse(text)) or "")
        if text.count("\n") > MAX_LINES and "\nOne file:" not in reason:
            too_long.append(f"{p.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not too_long


def test_sampling_needs_only_the_models_and_the_checkpoint():
    """Loading a generator must not pull in the trainer: a checkpoint carries the model's constructor arguments."""
    code = "import sys, synthdata.training.sample; print(sorted(m for m in sys.modules if m.startswith('synthdata')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    loaded = set(ast.literal_eval(out))
    assert "synthdata.training.sample" in loaded
    assert not loaded & {"synthdata.training.loop", "synthdata.training.distributed"}, loaded
