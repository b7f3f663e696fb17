"""imgclf_core's sub-packages import one way: root < data < models < training < inspection < export < cli."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers.files import ROOT

CORE = ROOT / "imgclf_core"
# Root modules are the base layer; the CLI sits on top of everything.
LAYERS = {"": 0, "data": 1, "models": 2, "training": 3, "inspection": 4, "export": 5, "cli": 6}


def layer_of(module: str) -> int:
    """The layer of a dotted module name inside imgclf_core."""
    parts = module.split(".")[1:]
    if not parts:
        return 0
    if parts[0] in LAYERS:
        return LAYERS[parts[0]]
    return LAYERS[""]


def imported_core_modules(source: str, importer: str) -> list[str]:
    """Every imgclf_core module a source imports, lazily inside functions included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("imgclf_core")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("imgclf_core"):
            found += [f"{node.module}.{alias.name}" if node.module in ("imgclf_core",) else node.module
                      for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{importer}: relative import; spell out imgclf_core.")
    return found


def upward_imports(source: str, importer: str) -> list[str]:
    """Imports of a layer above the importer's own: each one breaks the one-way rule."""
    own = layer_of(importer)
    return [f"{importer} imports {name}" for name in imported_core_modules(source, importer)
            if layer_of(name) > own and name != "imgclf_core.__version__"]


def core_modules() -> dict[str, Path]:
    """Dotted name -> file of every module in imgclf_core."""
    modules = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def test_every_sub_package_is_a_known_layer_with_a_docstring():
    packages = [path.parent.name for path in CORE.glob("*/__init__.py")]
    assert sorted(packages) == sorted(name for name in LAYERS if name not in ("", "cli"))
    for name in packages:
        docstring = ast.get_docstring(ast.parse((CORE / name / "__init__.py").read_text()))
        assert docstring and "import" in docstring, f"imgclf_core.{name} must say what it may import"


def test_core_imports_only_run_downward():
    violations = []
    for name, path in core_modules().items():
        violations += upward_imports(path.read_text(), name)
    assert violations == []


def test_core_never_imports_the_app():
    for name, path in core_modules().items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("streamlit", "imgclf_app", "app_pages") for n in names), name


def test_an_upward_import_is_caught():
    source = "def f():\n    from imgclf_core.training import run_folder\n"
    assert upward_imports(source, "imgclf_core.data.split") == [
        "imgclf_core.data.split imports imgclf_core.training"]
    assert upward_imports("from imgclf_core.data import images\n", "imgclf_core.training.run_folder") == []
    assert upward_imports("from imgclf_core import cli\n", "imgclf_core.export.exporter") == [
        "imgclf_core.export.exporter imports imgclf_core.cli"]
