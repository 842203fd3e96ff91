"""docs/cli.md is generated from --help; it must never drift from the code."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_cli_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_readme_links_resolve() -> None:
    for document in [PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)\)", document.read_text()):
            if target.startswith("http"):
                continue
            assert (document.parent / target).exists(), f"{document.name} links {target}"


def test_markdown_tables_have_a_cell_per_column() -> None:
    """A row with a missing `|` shifts every cell after it into the wrong column."""
    for document in [PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")]:
        columns = None
        for number, line in enumerate(document.read_text().splitlines(), 1):
            if not line.startswith("|"):
                columns = None
                continue
            # cells split on | outside `code`
            cells = len(re.sub(r"`[^`]*`", "code", line).strip().strip("|").split("|"))
            if columns is None:
                columns = cells
            assert cells == columns, f"{document.name}:{number} has {cells} cells, not {columns}"
