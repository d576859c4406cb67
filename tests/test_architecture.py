"""The package tree reads like the protocol, and imports point one way (README
"Architecture")."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "advfit"
# Each stage may import the stages listed for it (and itself).
ALLOWED = {
    "runtime": set(),
    "data": {"runtime"},
    "statistics": {"runtime"},
    "attacks": {"runtime"},
    "models": {"runtime", "attacks"},
    "evaluation": {"runtime", "data", "statistics", "attacks", "models"},
    "knn": {"runtime", "data", "statistics", "attacks"},
    "report": {"runtime", "data", "statistics"},
    "jobs": {"runtime"},
}
FRONT_DOOR = {"config", "limits", "registry_schema", "plugin_check", "studies", "__init__"}


def _stage(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def _advfit_imports(path: Path):
    """Every advfit package a module imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            assert node.level <= 1, f"{path}: relative import above its own package"
            if node.level == 0 and node.module and node.module.split(".")[0] == "advfit":
                parts = node.module.split(".")
                if len(parts) > 1:
                    yield parts[1]
                else:  # from advfit import x
                    yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "advfit" and len(parts) > 1:
                    yield parts[1]


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_stage_or_the_front_door():
    stages = {_stage(p) for p in MODULES}
    assert stages == set(ALLOWED) | FRONT_DOOR, stages ^ (set(ALLOWED) | FRONT_DOOR)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    stage = _stage(path)
    if stage in FRONT_DOOR:
        assert "jobs" not in set(_advfit_imports(path)), "the front door must not import jobs"
        return
    imported = set(_advfit_imports(path)) - {stage, "__version__"}
    assert imported <= ALLOWED[stage], (
        f"{path.relative_to(PACKAGE)} ({stage}) imports {sorted(imported - ALLOWED[stage])}")


def test_each_stage_says_what_it_holds_and_may_import():
    for stage in ALLOWED:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and ("may import" in doc.lower() or "imports no other" in doc.lower()), stage


def test_the_test_catches_an_import_against_the_arrows(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from advfit.evaluation.snapshots import evaluate_split\n")
    assert set(_advfit_imports(bad)) == {"evaluation"}
    assert not {"evaluation"} <= ALLOWED["models"]
