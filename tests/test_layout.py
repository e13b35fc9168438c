"""The package's layout: imports run one way (docs/architecture.md, Layout), read from the source with ast."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vaekit

SOURCE = Path(vaekit.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, top_level_only: bool) -> set[str]:
    """vaekit modules `path` imports (at module level only, or anywhere, function bodies included)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaekit"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("vaekit"))
    return found


MODULES = {module_name(path): path for path in SOURCE.rglob("*.py")}


def imports_of(name: str, top_level_only: bool = False) -> set[str]:
    return {m for m in imported_modules(MODULES[name], top_level_only) if m in MODULES} - {name}


def test_module_level_imports_have_no_cycle() -> None:
    graph = {name: imports_of(name, top_level_only=True) for name in MODULES}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for target in graph[name]:
            if target != "vaekit":  # every module's parent package; its exports are lazy
                visit(target, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])


@pytest.mark.parametrize(
    ("packages", "forbidden"),
    [
        (("vaekit.serve", "vaekit.viz", "vaekit.metrics", "vaekit.loading", "vaekit.models"), "vaekit.training"),
        (("vaekit.config",), "vaekit.presets"),
        (("vaekit.data",), "vaekit.models"),
        (("vaekit.posteriors", "vaekit.vmf", "vaekit.distributions", "vaekit.priors"), "vaekit.models"),
        (("vaekit.posteriors",), "vaekit.training"),
        (
            ("vaekit.models", "vaekit.distributions", "vaekit.priors", "vaekit.objectives", "vaekit.posteriors"),
            "vaekit.metrics",
        ),
    ],
)
def test_lower_modules_never_import_higher_ones(packages: tuple[str, ...], forbidden: str) -> None:
    offenders = [
        f"{name} imports {target}"
        for name in MODULES
        if name.startswith(packages)
        for target in imports_of(name)
        if target.startswith(forbidden)
    ]
    assert not offenders


def test_serving_a_run_never_loads_the_trainer() -> None:
    code = (
        "import sys, vaekit.serve.server, vaekit.viz.gallery, vaekit.metrics.evaluation, vaekit.loading; "
        "print(sorted(m for m in sys.modules if m.startswith('vaekit.training')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("name", vaekit.__all__)
def test_every_top_level_export_resolves(name: str) -> None:
    assert getattr(vaekit, name) is not None
    assert name in dir(vaekit)


def test_an_unknown_top_level_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'fit_model'"):
        vaekit.fit_model  # noqa: B018


MAX_FUNCTION_LINES = 80


def test_no_function_grows_past_80_lines() -> None:
    """A function longer than a screen has more than one job: split it along them."""
    long = [
        f"{MODULES[name].relative_to(SOURCE.parent)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name in MODULES
        for node in ast.walk(ast.parse(MODULES[name].read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long
