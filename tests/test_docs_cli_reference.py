"""The generated command reference (docs/_ext/cli_reference.py) lists exactly the options that each
command's own `--help` shows, and a page for every command."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradinvert.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import cli_reference  # noqa: E402

OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
TERM = re.compile(r"^`(--[a-z][a-z0-9-]*)`", re.MULTILINE)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    docs = tmp_path_factory.mktemp("docs")
    (docs / cli_reference.NOTES_DIR).mkdir(parents=True)
    (docs / cli_reference.NOTES_DIR / "labels.md").write_text("Hand-written notes.\n")
    paths = cli_reference.generate(docs)
    return {p.stem: p.read_text(encoding="utf-8") for p in paths}


def _help(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.output


def _commands() -> list[str]:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "400"})
    return re.findall(r"^│ ([a-z][a-z-]*) ", result.output, re.MULTILINE)


def test_every_command_has_a_page_and_an_index_entry(pages: dict[str, str]) -> None:
    commands = _commands()
    assert {"capture", "invert", "evaluate", "labels"} <= set(commands)
    assert set(pages) == {"index", *commands}
    for command in commands:
        assert f"[`{command}`]({command}.md)" in pages["index"]


@pytest.mark.parametrize("command", ["capture", "invert", "evaluate", "labels", "import", "report"])
def test_option_lists_match_help(command: str, pages: dict[str, str]) -> None:
    shown = set(OPTION.findall(_help(command))) - {"--help"}
    page = pages[command]
    listed = set()
    for term in re.findall(r"^`--.*$", page, re.MULTILINE):
        listed |= set(OPTION.findall(term))
    # every option of the page is one --help shows, and --help's own options are all on the page
    assert listed <= shown
    options_in_help = {
        o for o in shown if re.search(rf"│\s+(\*\s+)?{re.escape(o)}\b", _help(command))
    }
    assert options_in_help and options_in_help <= listed


def test_notes_are_included_under_details(pages: dict[str, str]) -> None:
    assert "## Details" in pages["labels"]
    assert "```{include} ../command-notes/labels.md" in pages["labels"]
    assert "## Details" not in pages["capture"]
