"""What benchmarks/gpu_check.sh needs from a Python environment, without importing the project.

    python benchmarks/gpu_env.py missing   # requirements of pyproject.toml not met here (exit 1)
    python benchmarks/gpu_env.py pins      # NAME==VERSION of WHEELS as installed here

``missing`` reads the runtime dependencies and the ``test`` extra (less ruff, which only lints)
from pyproject.toml and prints each one this interpreter does not satisfy, one a line.
``pins`` prints the installed versions of the small pure-Python packages the project needs on
top of a machine image that already has torch (a consistent set, e.g. pydantic with the
pydantic-core it was released with), for ``pip download`` to fetch as wheels.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
NOT_NEEDED = {"ruff"}  # lints only
# Small packages the project needs that an image with torch may lack (with what they need).
WHEELS = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "tomli-w",
    "lpips",
    "typer",
    "click",
    "shellingham",
    "rich",
    "markdown-it-py",
    "mdurl",
    "pygments",
)


def requirements() -> list[Requirement]:
    """The runtime dependencies and the test extra that apply to this interpreter."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    found = [Requirement(text) for text in project["dependencies"]]
    found += [Requirement(text) for text in project["optional-dependencies"]["test"]]
    return [
        r for r in found if r.name not in NOT_NEEDED and (r.marker is None or r.marker.evaluate())
    ]


def missing() -> list[str]:
    """Each requirement this interpreter does not satisfy, with what it has instead."""
    problems = []
    for requirement in requirements():
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            problems.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement} (found {installed})")
    return problems


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "missing":
        problems = missing()
        print("\n".join(problems))
        return 1 if problems else 0
    if command == "pins":
        print("\n".join(f"{name}=={version(name)}" for name in WHEELS))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
