"""Docs that stay true: the commands and tables of the user documentation.

Every fenced code block of `README.md`, `docs/*.md` and
`benchmarks/README.md` is scanned for command lines that start with
`python -m MODULE`, `.venv/bin/python -m MODULE`, `python benchmarks/X.py`
or `.venv/bin/python benchmarks/X.py`, optionally after environment
assignments (continuation lines joined, `#` comments dropped, `[...]`
brackets of optional flags ignored). For each:

* the module or script exists (a package run with `-m` has `__main__.py`);
* every `--gin_file` (and `--experiment` of `device_quality.py`) names a
  file under `gin_configs/`, or one of the placeholders allowed below;
* every `--flag` is in the command's `--help` (run once per command in a
  subprocess), except gin bindings (`--gin.NAME=VALUE`) and the T5X gin
  flags of the gin entry points;
* `benchmarks/quality.py --methods` names registered methods.

The README is the front door: at most 250 lines, its families table is
`registry.families_table()`, and no user doc speaks of "session N".
Relative links (and their `#anchors`) resolve.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from recjax.models import registry

REPO = pathlib.Path(__file__).resolve().parents[1]
GIN_DIR = REPO / "gin_configs"
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
BENCH_README = REPO / "benchmarks" / "README.md"
ALL_DOCS = [README, *DOCS, BENCH_README]

MAX_README_LINES = 250
SESSION = re.compile(r"[Ss]ession \d")
FAMILIES_START = "<!-- families:start -->"
FAMILIES_END = "<!-- families:end -->"

# Command prefixes: `python -m MODULE ...` or `python benchmarks/X.py ...`,
# after optional environment assignments (`PYTHONPATH=... python ...`).
COMMAND = re.compile(
    r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"
    r"(?:\.venv/bin/)?python\s+(?:-m\s+(?P<module>[\w.]+)"
    r"|(?P<script>benchmarks/[\w]+\.py))(?=\s|$)")
# Gin files a doc may name that are not in gin_configs/, and why.
ALLOWED_GIN_FILES = {
    # docs/adding_a_family.md: the toy family the reader writes.
    "models/bag.gin",
    # Written into an unpacked run bundle (docs/running.md).
    "bundle.gin",
}
# Methods a doc may pass to benchmarks/quality.py that are not registered.
ALLOWED_METHODS = {"bag"}  # docs/adding_a_family.md's toy family.
# T5X flags of the gin entry points, parsed outside their argparse help.
GIN_FLAGS = {"--gin_file", "--gin_search_paths"}
HELP_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200",
            "JAX_PLATFORMS": "cpu"}


def _commands(path: pathlib.Path) -> list[tuple[str, str]]:
  """`(location, command)` of every command line in fenced code blocks."""
  out = []
  lines = path.read_text(encoding="utf-8").splitlines()
  in_block, pending, start = False, "", 0
  for number, line in enumerate(lines, 1):
    if line.lstrip().startswith("```"):
      in_block, pending = not in_block, ""
      continue
    if not in_block:
      continue
    text = line.strip()
    if not pending:
      start = number
    if text.endswith("\\"):
      pending += text[:-1] + " "
      continue
    text, pending = pending + text, ""
    if COMMAND.match(text):
      rel = path.relative_to(REPO)
      out.append((f"{rel}:{start}", text))
  return out


def _all_commands() -> list[tuple[str, str]]:
  return [c for doc in ALL_DOCS if doc.exists() for c in _commands(doc)]


def _split(command: str) -> list[str]:
  """Shell words of a command, comments dropped, optional brackets off."""
  words = shlex.split(command, comments=True)
  return [w.strip("[]") for w in words if w.strip("[]")]


def _flags(words: list[str]) -> list[tuple[str, str | None]]:
  """`(--flag, value or None)` of the words after the program."""
  out = []
  for i, word in enumerate(words):
    if not word.startswith("--"):
      continue
    if "=" in word:
      name, value = word.split("=", 1)
    else:
      nxt = words[i + 1] if i + 1 < len(words) else None
      name = word
      value = nxt if nxt is not None and not nxt.startswith("-") else None
    out.append((name, value))
  return out


def _module_path(module: str) -> pathlib.Path | None:
  """The file `python -m module` runs, found without importing anything.

  `importlib.util.find_spec` on a dotted name imports its parent packages
  (`tasks` imports TensorFlow), so only the top level goes through it and
  the rest is looked up in the package folders.
  """
  top, *rest = module.split(".")
  spec = importlib.util.find_spec(top)
  if spec is None:
    return None
  if spec.submodule_search_locations is None:
    return pathlib.Path(spec.origin) if not rest else None
  where = pathlib.Path(next(iter(spec.submodule_search_locations)))
  for part in rest:
    if (where / part).is_dir():
      where = where / part
    elif (where / f"{part}.py").is_file():
      where = where / f"{part}.py"
    else:
      return None
  if where.is_dir():  # A package runs as its __main__.py.
    main = where / "__main__.py"
    return main if main.is_file() else None
  return where


@functools.cache
def _help(program: tuple[str, ...]) -> str:
  """`--help` text of a program (`("-m", module)` or `(script,)`)."""
  result = subprocess.run(
      [sys.executable, *program, "--help"], cwd=REPO,
      env=dict(os.environ, **HELP_ENV), capture_output=True, text=True,
      timeout=120, check=False)
  assert result.returncode == 0, (program, result.stderr[-2000:])
  return result.stdout


def _in_help(flag: str, text: str) -> bool:
  return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])",
                   text) is not None


COMMANDS = _all_commands()


def test_docs_have_commands():
  assert len(COMMANDS) >= 20, COMMANDS
  assert all(doc.exists() for doc in ALL_DOCS), ALL_DOCS


@pytest.mark.parametrize("where,command", COMMANDS,
                         ids=[w for w, _ in COMMANDS])
def test_command_stays_true(where, command):
  match = COMMAND.match(command)
  module, script = match.group("module"), match.group("script")
  if module:
    assert _module_path(module) is not None, (
        f"{where}: no module {module!r} to run with python -m")
    program = ("-m", module)
  else:
    assert (REPO / script).is_file(), f"{where}: no script {script}"
    program = (script,)
  words = _split(command[match.end():])
  flags = _flags(words)
  for name, value in flags:
    if name in ("--gin_file", "--experiment"):
      assert value, f"{where}: {name} without a value"
      # A run directory's `config.gin` (RUN/config.gin) re-runs that run.
      assert (value in ALLOWED_GIN_FILES or value.endswith("/config.gin") or
              (GIN_DIR / value).is_file()), (
                  f"{where}: {name} {value} is not a file under gin_configs/")
  to_check = [name for name, _ in flags
              if not name.startswith("--gin.") and
              not (module and name in GIN_FLAGS)]
  if to_check:
    text = _help(program)
    missing = [f for f in to_check if not _in_help(f, text)]
    assert not missing, (
        f"{where}: {' '.join(program)} has no flag(s) {missing}")
  if script == "benchmarks/quality.py":
    known = set(registry.list_methods()) | ALLOWED_METHODS
    for name, value in flags:
      if name == "--methods" and value:
        unknown = set(value.split(",")) - known - {""}
        assert not unknown, f"{where}: unknown methods {sorted(unknown)}"


def test_readme_is_a_front_door():
  text = README.read_text(encoding="utf-8")
  assert len(text.splitlines()) <= MAX_README_LINES
  assert text.count(FAMILIES_START) == 1
  assert text.count(FAMILIES_END) == 1
  table = text.split(FAMILIES_START)[1].split(FAMILIES_END)[0]
  assert table.strip() == registry.families_table().strip(), (
      "README.md's families table differs from `python -m recjax.models`; "
      "paste its output between the markers.")


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(
    REPO)))
def test_no_development_history(doc):
  for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(),
                                1):
    assert not SESSION.search(line), f"{doc.name}:{number}: {line}"


def _anchors(path: pathlib.Path) -> set[str]:
  """GitHub's anchors of a markdown file's headings."""
  out, in_block = set(), False
  for line in path.read_text(encoding="utf-8").splitlines():
    if line.lstrip().startswith("```"):
      in_block = not in_block
    heading = None if in_block else re.match(r"#+\s+(.*)", line)
    if heading:
      text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
      out.add(text.replace(" ", "-"))
  return out


@pytest.mark.parametrize("doc", ALL_DOCS, ids=lambda p: str(p.relative_to(
    REPO)))
def test_relative_links_resolve(doc):
  text = doc.read_text(encoding="utf-8")
  for target in re.findall(r"\]\(([^)\s]+)\)", text):
    if re.match(r"[a-z]+:", target):
      continue
    file, _, anchor = target.partition("#")
    path = (doc.parent / file).resolve() if file else doc
    assert path.exists(), f"{doc.name}: link to {target} does not resolve"
    if anchor and path.suffix == ".md":
      assert anchor in _anchors(path), (
          f"{doc.name}: link to {target}: no such heading")
