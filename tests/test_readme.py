"""The quickstart is tested: the shell blocks of the README and of the first tutorial run, in order,
as a newcomer would type them in a fresh folder beside the shipped samples.

A document steers its blocks with HTML comments right before a fenced ``bash`` block (invisible on
GitHub and in the site):

    <!-- test: skip (why) -->                       do not run the next block
    <!-- test: gradinvert invert += --iterations 3 -->
        append options to every command of the next block that starts with ``gradinvert invert``
        (click keeps the last value of an option, so this lowers a budget the text states)

Long commands must carry such a budget (see BUDGETS), so the test stays fast on 2 cores.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {"README": ROOT / "README.md", "first tutorial": ROOT / "docs/tutorials/first-audit.md"}
SHELL_LANGUAGES = {"bash", "sh", "shell"}
MARKER = re.compile(r"^<!--\s*test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+)\s*(?P<lang>[\w+-]*)\s*$")
# Options a tested command must keep small, and their largest allowed value.
BUDGETS = {
    ("gradinvert", "invert"): {"--iterations": 10, "--latent-iterations": 10, "--seeds": 4},
    ("gradinvert", "learn-prior"): {"--tasks": 2},
    ("gradinvert", "train-prior"): {"--epochs": 1},
    ("gradinvert", "train-inverter"): {"--epochs": 1},
}
NEVER_RUN = {("make",), ("gradinvert", "demo")}  # minutes long: such blocks must be skipped
OUTPUT_OPTIONS = ("--out", "--grid", "--json", "--png-dir")
TIMEOUT_S = 600


@dataclass
class Block:
    """One fenced shell block and what its markers ask."""

    line: int
    text: str
    skip: str | None = None
    appends: list[tuple[str, str]] = field(default_factory=list)

    def commands(self) -> list[str]:
        """The block's logical command lines (continuations joined, comments dropped)."""
        joined = re.sub(r"\s*\\\n\s*", " ", self.text)
        return [
            line.strip()
            for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]

    def script(self) -> str:
        """The block as run: every marked command with its options appended."""
        lines = []
        for command in self.commands():
            for prefix, extra in self.appends:
                if command.startswith(prefix + " ") or command == prefix:
                    command = _append(command, extra)
            lines.append(command)
        return "\n".join(lines)


def _append(command: str, extra: str) -> str:
    """``extra`` after the command's own arguments, before any ``||``, ``&&``, ``|`` or ``>``."""
    match = re.search(r"\s(\|\||&&|\||>|;)\s", command)
    if match is None:
        return f"{command} {extra}"
    return f"{command[: match.start()]} {extra}{command[match.start() :]}"


def extract_blocks(text: str) -> list[Block]:
    """Every fenced shell block of a Markdown text with its markers; a marker that does not
    precede a shell block, or that the extractor does not understand, is an error."""
    blocks: list[Block] = []
    pending: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line.strip())
        fence = FENCE.match(line)
        if marker:
            pending.append((i + 1, marker.group("body")))
        elif fence:
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group("fence"))),
                None,
            )
            if end is None:
                raise ValueError(f"line {i + 1}: unclosed code fence")
            if fence.group("lang") in SHELL_LANGUAGES:
                block = Block(line=i + 1, text="\n".join(lines[i + 1 : end]))
                for at, body in pending:
                    _apply_marker(block, at, body)
                blocks.append(block)
            elif pending:
                raise ValueError(f"line {pending[0][0]}: test marker before a non-shell block")
            pending = []
            i = end
        elif line.strip() and pending:
            raise ValueError(f"line {pending[0][0]}: test marker not followed by a shell block")
        i += 1
    if pending:
        raise ValueError(f"line {pending[0][0]}: test marker at the end of the document")
    return blocks


def _apply_marker(block: Block, at: int, body: str) -> None:
    skip = re.fullmatch(r"skip\s*\((?P<why>.+)\)", body)
    append = re.fullmatch(r"(?P<prefix>[\w.-]+(?: [\w.-]+)*)\s*\+=\s*(?P<extra>\S.*)", body)
    if skip:
        block.skip = skip.group("why")
    elif append:
        block.appends.append((append.group("prefix"), append.group("extra")))
    else:
        raise ValueError(f"line {at}: unknown test marker {body!r} (skip (why) or PREFIX += ARGS)")


def budget_problems(command: str) -> list[str]:
    """Why a command may not run in the test as written (too long a budget, a minutes-long
    command), or nothing."""
    words = shlex.split(command, comments=True)
    problems = []
    for prefix in NEVER_RUN:
        if tuple(words[: len(prefix)]) == prefix:
            problems.append(f"{' '.join(prefix)} takes minutes: mark its block skip")
    for prefix, limits in BUDGETS.items():
        if tuple(words[: len(prefix)]) != prefix:
            continue
        values = {}
        for k, word in enumerate(words[:-1]):
            if word in limits:
                values[word] = words[k + 1]  # the last occurrence wins, as in click
        for option, limit in limits.items():
            if option == "--iterations" and option not in values:
                problems.append(f"{' '.join(prefix)} without {option}: append a small one")
            elif option in values and float(values[option]) > limit:
                problems.append(f"{option} {values[option]} > {limit}: append a smaller one")
    return problems


def output_paths(command: str) -> list[str]:
    """The files and folders a command names as its outputs (none for a dry run or a printed
    config, which write nothing by design)."""
    words = shlex.split(command, comments=True)
    if not words or words[0] != "gradinvert" or {"--dry-run", "--print-config"} & set(words):
        return []
    return [
        words[k + 1]
        for k, word in enumerate(words[:-1])
        if word in OUTPUT_OPTIONS and words[k + 1] != "-"
    ]


def run_document(path: Path, workdir: Path) -> tuple[subprocess.CompletedProcess[str], list[Block]]:
    """All shell blocks of a document, in order, as one bash session in ``workdir``."""
    blocks = [b for b in extract_blocks(path.read_text(encoding="utf-8")) if b.skip is None]
    (workdir / "samples").symlink_to(ROOT / "samples")
    (workdir / ".venv").symlink_to(Path(sys.prefix))
    parts = ["set -euo pipefail"]
    for block in blocks:
        parts.append(f"echo '>>> block at line {block.line}' >&2")
        parts.append(block.script())
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",  # the two documents run side by side on a 2-core machine
    }
    result = subprocess.run(
        ["bash", "-c", "\n".join(parts)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return result, blocks


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Both documents, run side by side (each command is mostly single-threaded start-up)."""
    results: dict[str, tuple] = {}

    def work(name: str, path: Path) -> None:
        workdir = tmp_path_factory.mktemp(re.sub(r"\W", "-", name))
        try:
            results[name] = (*run_document(path, workdir), workdir)
        except Exception as exc:  # reported by the test that reads it
            results[name] = (exc, [], workdir)

    threads = [threading.Thread(target=work, args=item) for item in DOCUMENTS.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_blocks_run_as_written(name: str, runs: dict[str, tuple]) -> None:
    result, blocks, workdir = runs[name]
    if isinstance(result, BaseException):
        raise result
    failed_at = re.findall(r">>> block at line (\d+)", result.stderr)
    assert result.returncode == 0, (
        f"{DOCUMENTS[name].name}: the block at line {failed_at[-1] if failed_at else '?'} failed "
        f"(exit {result.returncode}):\n{result.stderr[-3000:]}"
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for block in blocks:
        for command in block.commands():
            for output in output_paths(command):
                assert (workdir / output).exists(), f"{command!r} did not write {output}"


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_blocks_keep_small_budgets(name: str) -> None:
    """Every command that runs carries a small budget, so the quickstart test stays quick; a new
    block with the text's full budget fails here with what to mark, not with a timeout."""
    blocks = extract_blocks(DOCUMENTS[name].read_text(encoding="utf-8"))
    ran = [b for b in blocks if b.skip is None]
    assert len(ran) >= 2, f"{name}: expected at least two runnable shell blocks"
    problems = [
        f"line {block.line}: {command[:60]}...: {problem}"
        for block in ran
        for command in block.script().splitlines()
        for problem in budget_problems(command)
    ]
    assert not problems, "\n".join(problems)


def test_markers_are_applied_and_checked() -> None:
    text = (
        "<!-- test: gradinvert invert += --iterations 3 -->\n"
        "```bash\n"
        "gradinvert invert u.safetensors --attack dlg \\\n    --out r.safetensors\n"
        "gradinvert invert u.safetensors --out r2.safetensors || echo leaked\n"
        "gradinvert evaluate r.safetensors --truth t.safetensors\n"
        "```\n\n"
        "<!-- test: skip (minutes long) -->\n"
        "```bash\nmake demo\n```\n"
        "```python\nprint('not shell')\n```\n"
    )
    first, second = extract_blocks(text)
    assert first.script().splitlines() == [
        "gradinvert invert u.safetensors --attack dlg --out r.safetensors --iterations 3",
        "gradinvert invert u.safetensors --out r2.safetensors --iterations 3 || echo leaked",
        "gradinvert evaluate r.safetensors --truth t.safetensors",
    ]
    assert second.skip == "minutes long"
    assert output_paths(first.script().splitlines()[0]) == ["r.safetensors"]
    assert output_paths("gradinvert audit plan.toml --out audit-out --dry-run") == []
    assert budget_problems("gradinvert invert u --iterations 4800 --iterations 3") == []
    assert budget_problems("gradinvert invert u --iterations 3 --iterations 4800")
    assert budget_problems("gradinvert invert u --attack ig")
    assert budget_problems("make demo")
    for bad in (
        "<!-- test: skip -->\n```bash\nls\n```\n",  # a skip must say why
        "<!-- test: frobnicate -->\n```bash\nls\n```\n",
        "<!-- test: skip (x) -->\nsome prose\n```bash\nls\n```\n",
        "<!-- test: skip (x) -->\n```python\nx = 1\n```\n",
        "```bash\nls\n",
    ):
        with pytest.raises(ValueError):
            extract_blocks(bad)


def test_readme_links_point_to_files() -> None:
    """The README is read on GitHub, outside the strict docs build: its relative links and its
    picture must name files that exist."""
    text = DOCUMENTS["README"].read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert len(local) >= 10
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing
