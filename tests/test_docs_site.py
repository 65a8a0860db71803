"""The docs site builds with `mkdocs build --strict`: no broken link, no missing page, no
warning (the reference pages are generated: tests/test_docs_reference.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(MKDOCS), "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))


def test_the_site_builds_strictly_with_every_page(tmp_path):
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for page in ("index.html", "reference/parameters/index.html",
                 "reference/catalog/index.html", "reference/command-line/index.html",
                 "reference/make/index.html", "changelog/index.html"):
        assert (tmp_path / "site" / page).stat().st_size > 1000, page
    assert "md-header" in (tmp_path / "site" / "index.html").read_text()  # Material


def test_a_broken_link_fails_the_strict_build(tmp_path):
    import shutil

    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("viz"))
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [a page that is not there](nowhere.md).\n")
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0 and "nowhere.md" in result.stdout + result.stderr
