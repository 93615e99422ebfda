"""Sphinx configuration of the gradinvert documentation (built by `make docs` into site/).

Why Sphinx: the library's docstrings are reStructuredText (``literals`` and :func:`roles`), which
autodoc renders as written; MyST lets every page stay Markdown, so the README's text moved here
unchanged; the furo theme loads no web fonts or scripts from the network; Sphinx is the generator
of the documentation this project's users read (PyTorch, Flower, Opacus).
See docs/reference/development.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "gradinvert"
author = "the gradinvert authors"
copyright = "the gradinvert authors, Apache-2.0"  # noqa: A001 (Sphinx's name)

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "cli_reference",  # docs/_ext/cli_reference.py: reference/cli/ from the click command tree
]

smartquotes = False  # `--option` in plain text must stay two hyphens, quotes straight
source_suffix = {".md": "markdown"}
root_doc = "index"
# command-notes/ pages are included into the generated command pages, not built on their own.
exclude_patterns = ["_build", "_ext", "README.md", "reference/command-notes/*"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4  # `[text](page.md#a-heading)` links resolve to heading slugs

# Nothing is fetched at build or view time: no intersphinx, no web fonts, no CDN scripts.
html_theme = "furo"
html_title = "gradinvert"
html_static_path: list[str] = []
html_show_sourcelink = False
html_copy_source = False

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # third-party base classes' docstrings are not ours to build


def setup(app):  # noqa: ANN001, ANN201 (Sphinx's hook)
    """Mermaid diagrams render on GitHub; here they show as their text (no script from a CDN)."""
    from pygments.lexers.special import TextLexer

    app.add_lexer("mermaid", TextLexer)
