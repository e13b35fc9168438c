"""The documentation cannot rot: every Python block on a page (docs/ and the README) runs on a tiny
setting, every `vaekit ...` command shown is parsed by the real argument parser (and a training
command's settings resolved), every TOML block resolves, and the site builds with --strict.

A Python block may be preceded by a comment that says what it needs or why it cannot run:
    <!-- snippet: uses=mlp-run,images -->     the fixtures below, made in a fresh folder
    <!-- snippet: skip: needs a GPU -->         never run; the reason is required
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import blob_images
from vaekit.cli import build_parser, config_flags
from vaekit.errors import VaekitError
from vaekit.presets import PRESETS, resolve
from vaekit.studies import read_study
from vaekit.studies.search import read_search

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
README_MAX_LINES = 150

FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*snippet:\s*(?P<what>.*?)\s*-->\s*$")
INLINE_COMMAND = re.compile(r"`(vaekit [^`]+)`")
SHELL_LANGUAGES = {"sh", "bash", "console", "shell", ""}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    body: str
    marker: str | None  # the snippet comment just before the block, if any

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        marker = MARKER.search(before[-1]) if before else None
        body = "\n".join(line[len(match["indent"]) :] for line in match["body"].splitlines())
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, match["lang"], body, marker["what"] if marker else None))
    return found


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", page.read_text())


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language == "python"]


# --- Python blocks -------------------------------------------------------------------------------


def _images(folder: Path, namespace: dict[str, object]) -> None:
    images, labels = blob_images(200, side=8, seed=3)  # uint8 (200, 1, 8, 8)
    namespace.update(images=images, labels=labels, new_images=blob_images(20, side=8, seed=4)[0])


def _table(folder: Path, namespace: dict[str, object]) -> None:
    rows = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    namespace.update(table=rows, rows=rows)


def _shop(folder: Path, namespace: dict[str, object]) -> None:
    from tests.test_mixed_tables import shop_table

    frame = shop_table(300, seed=7)
    frame.to_csv(folder / "shop.csv", index=False)
    namespace.update(shop=frame)


def _my_factory(folder: Path, namespace: dict[str, object]) -> None:
    from tests.user_networks import small_conv

    namespace.update(my_factory=small_conv)


def _mlp_run(folder: Path, namespace: dict[str, object]) -> None:
    shutil.copytree(_trained_mlp_run(), folder / "runs" / "mlp")


_MLP_RUN: list[Path] = []


def _trained_mlp_run() -> Path:
    """One tiny `mlp` run for the whole session (a page's `runs/mlp`)."""
    if not _MLP_RUN:
        import tempfile

        import vaekit

        out = Path(tempfile.mkdtemp(prefix="vaekit-docs-")) / "mlp"
        images, labels = blob_images(200, side=8, seed=5)
        vaekit.fit(images, labels, out=out, preset="mlp", epochs=1, progress=False)
        _MLP_RUN.append(out)
    return _MLP_RUN[0]


FIXTURES: dict[str, Callable[[Path, dict[str, object]], None]] = {
    "images": _images,
    "table": _table,
    "shop": _shop,
    "my_factory": _my_factory,
    "mlp-run": _mlp_run,
}


def uses(block: Block) -> list[str]:
    if block.marker is None:
        return []
    match = re.fullmatch(r"uses=([\w,-]+)", block.marker)
    return match[1].split(",") if match else []


def test_every_snippet_marker_is_understood() -> None:
    for block in PYTHON_BLOCKS:
        if block.marker is None:
            continue
        skip = re.fullmatch(r"skip:\s*(.+)", block.marker)
        assert skip or uses(block), f"{block.name}: marker {block.marker!r} is neither uses=... nor skip: REASON"
        assert set(uses(block)) <= set(FIXTURES), f"{block.name}: unknown fixture in {block.marker!r}"


@pytest.fixture
def in_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.name)
def test_the_python_block_runs(block: Block, in_empty_folder: Path) -> None:
    if block.marker is not None and block.marker.startswith("skip:"):
        pytest.skip(block.marker)
    # A module of its own, so that a network factory defined in the block can be imported by name.
    module = types.ModuleType(f"docs_snippet_{abs(hash(block.name))}")
    sys.modules[module.__name__] = module
    try:
        for name in uses(block):
            FIXTURES[name](in_empty_folder, module.__dict__)
        exec(compile(block.body, block.name, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


# --- command lines -------------------------------------------------------------------------------


def _logical_lines(body: str) -> Iterator[str]:
    """A shell block's lines, continuations joined and a console's prompt removed."""
    pending = ""
    for raw in body.splitlines():
        line = raw.removeprefix("$ ")
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""


def _vaekit_arguments(line: str) -> list[str] | None:
    """The arguments after `vaekit` (or `-m vaekit`) on a shell line, up to a shell operator."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return None
    for i, token in enumerate(tokens):
        if token == "vaekit" and (i == 0 or tokens[i - 1] in ("-m", "srun", "exec")):
            rest = tokens[i + 1 :]
            end = next((j for j, t in enumerate(rest) if t in ("|", "&&", ";", ">", "2>&1")), len(rest))
            return rest[:end]
    return None


@dataclass(frozen=True)
class Command:
    where: str
    arguments: tuple[str, ...]


def documented_commands() -> list[Command]:
    found = []
    for block in ALL_BLOCKS:
        if block.language not in SHELL_LANGUAGES:
            continue
        for offset, line in enumerate(_logical_lines(block.body)):
            arguments = _vaekit_arguments(line)
            if arguments is not None:
                found.append(Command(f"{block.name}+{offset + 1}", tuple(arguments)))
    for page in PAGES:
        for match in INLINE_COMMAND.finditer(prose(page)):
            words = match[1].replace("\n", " ").replace("[", "").replace("]", "").split()
            if len(words) > 2:  # `vaekit evaluate` alone names the command, it is no command line
                found.append(Command(f"{page.relative_to(ROOT)}: `{match[1]}`", tuple(words[1:])))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands_to_check() -> None:
    assert len(COMMANDS) > 60
    assert {c.arguments[0] for c in COMMANDS} >= {"train", "evaluate", "sample", "encode", "score", "serve", "plot"}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.where)
def test_the_documented_command_parses(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        args = build_parser().parse_args(list(command.arguments))
    except SystemExit as stop:
        if stop.code == 0:  # --help
            return
        pytest.fail(f"{command.where}: `vaekit {' '.join(command.arguments)}` is refused: {capsys.readouterr().err}")
    if args.command != "train" or args.config is not None or args.resume is not None:
        return
    if args.preset is not None and args.preset not in PRESETS:
        assert args.preset.isupper(), f"{command.where}: unknown preset {args.preset}"  # a placeholder: NAME
        return
    try:
        resolve(preset=args.preset, flags=config_flags(args))
    except VaekitError as exc:
        pytest.fail(f"{command.where}: `vaekit {' '.join(command.arguments)}` has settings vaekit refuses: {exc}")


def test_a_renamed_flag_fails_the_check() -> None:
    """The check above can fail: a flag the parser does not know is refused."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["score", "--run", "r", "--out", "s.csv", "--fpr-threshold", "0.01"])


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.language == "toml"], ids=lambda block: block.name)
def test_the_toml_block_resolves(block: Block, tmp_path: Path) -> None:
    if block.marker and block.marker.startswith("skip:"):
        pytest.skip(block.marker)  # a package's pyproject.toml, not a run's settings
    (tmp_path / "my.toml").write_text(block.body)
    if "[grid]" in block.body:  # a study file: every run of its grid is built and checked
        read_study(tmp_path / "my.toml")
        return
    if "[search]" in block.body:  # a search study file: each end of each range is checked
        read_search(tmp_path / "my.toml")
        return
    resolve(config_file=tmp_path / "my.toml")


# --- the site and the README ---------------------------------------------------------------------


def test_the_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    targets = re.findall(r"\]\(((?:docs|benchmarks|examples)/[^)#\s]+)", readme)
    assert targets, "the README links into the docs"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages == set(re.findall(r":\s+([\w/-]+\.md)\s*$", nav, re.M))


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The API reference is generated from the docstrings, not written by hand.
    api = (tmp_path / "site" / "reference" / "training" / "index.html").read_text()
    assert "Train a VAE on data in memory and return the trained run, loaded." in api


def _method_tables() -> types.ModuleType:
    import importlib.util

    spec = importlib.util.spec_from_file_location("method_tables", DOCS / "method_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_method_tables_are_generated_from_the_specs_installed() -> None:
    tables = _method_tables()
    text = tables.PAGE.read_text()
    assert tables.page_text(text) == text, "docs/reference/methods.md is out of date: run python docs/method_tables.py"


# Each kind's hand-written page, whose table explains every method's math and use.
METHOD_PAGES = {
    "objective": DOCS / "concepts" / "objectives.md",
    "posterior": DOCS / "guides" / "posteriors.md",
    "likelihood": DOCS / "concepts" / "numbers.md",
}


@pytest.mark.parametrize("kind", list(METHOD_PAGES))
def test_every_built_in_method_has_a_row_in_its_page(kind: str) -> None:
    from vaekit import methods

    rows = {
        line.split("|")[1].strip() for line in METHOD_PAGES[kind].read_text().splitlines() if line.startswith("| `")
    }
    built_in = [name for name, spec in methods.specs(kind).items() if spec.source == methods.BUILT_IN]
    assert [name for name in built_in if f"`{name}`" not in rows] == []
