"""The docs site builds with `mkdocs build --strict` (no broken link, no missing page, no
warning), renders in a real headless browser, and keeps its promises: a short README with no
commit hash, a results table that is the results page's, results pages marked when they are
older than the code. The reference pages are generated: tests/test_docs_reference.py."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).parent / "mkdocs"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(MKDOCS), "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    result = _build(ROOT / "mkdocs.yml", out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _copy_docs(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("viz"))
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    return tmp_path / "mkdocs.yml"


def test_the_site_builds_strictly_with_every_page(site):
    import yaml

    def pages(nav) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return [p for item in nav for p in pages(item)]

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.SafeLoader)
    listed = pages(config["nav"])
    assert len(listed) >= 30
    for page in listed:
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        html = html.replace("/index/index.html", "/index.html")
        assert (site / html).stat().st_size > 1000, page
    assert "md-header" in (site / "index.html").read_text()  # Material
    # Every Markdown page is in the navigation: nothing written and left unreachable.
    written = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")
               if "viz" not in p.parts}
    assert written == set(listed), written ^ set(listed)


def test_the_api_reference_is_written_from_the_docstrings(site):
    api = (site / "reference/api/index.html").read_text()
    for name in ("engine.chain.run_chain", "engine.experiment.run_experiment",
                 "identity.code_digest", "modeling.inference.load_generator",
                 "schema.training.TrainParams"):
        assert f'id="sail_pipeline.{name}"' in api, name
    assert "sha256 over the source of every module" in api  # code_digest's own docstring


def test_a_broken_link_fails_the_strict_build(tmp_path):
    config = _copy_docs(tmp_path)
    guide = tmp_path / "docs" / "guides" / "recipe.md"
    guide.write_text(guide.read_text() + "\nSee [a page that is not there](nowhere.md).\n")
    result = _build(config, tmp_path / "site")
    assert result.returncode != 0 and "nowhere.md" in result.stdout + result.stderr


def test_a_results_page_older_than_the_code_says_so(tmp_path):
    from sail_pipeline.provenance import code_state

    config = _copy_docs(tmp_path)
    marker = "<!-- results-page code_state={} commit=0123456789abcdef -->"
    for name, state in (("recipe", "0000000000000000"), ("quality", code_state())):
        page = tmp_path / "docs" / "results" / f"{name}.md"
        text = re.sub(r"<!-- results-page .*? -->", marker.format(state), page.read_text())
        page.write_text(text)
    result = _build(config, tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stale = (tmp_path / "site/results/recipe/index.html").read_text()
    current = (tmp_path / "site/results/quality/index.html").read_text()
    assert "Older than the code" in stale and "0123456789ab" in stale
    assert "Older than the code" not in current


def test_a_page_of_many_runs_names_the_stale_ones():
    """The benchmarks page carries one marker per record: the warning counts the stale ones."""
    from sail_pipeline.provenance import code_state
    from sail_pipeline.results.page import marker

    spec = importlib.util.spec_from_file_location("freshness",
                                                  ROOT / "docs/hooks/results_freshness.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    current = marker({"code_state": code_state(), "commit": "a" * 40})
    stale = marker({"code_state": "0" * 16, "commit": "b" * 40})
    page = "# Results: benchmarks\n\n| a table |\n\n"
    out = hook.on_page_markdown(page + current + "\n" + stale + "\n", None)
    warning = out.split("| a table |")[0]
    assert "Older than the code" in warning and "1 of the 2 runs" in warning
    assert "b" * 12 in warning and "a" * 12 not in warning
    assert hook.on_page_markdown(page + current + "\n" + current, None) == \
        page + current + "\n" + current  # all current: unchanged
    assert hook.on_page_markdown(page, None) == page  # no run named: nothing to judge


def test_the_readme_is_a_landing_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert not re.search(r"(?<![\w/.-])[0-9a-f]{7,40}(?![\w-])", readme), "a commit hash"
    assert not re.search(r"\bat (commit|an earlier commit)\b|\bbefore #\d+", readme)
    # Its results table is the results page's, as `make results` wrote it.
    table = readme.split("<!-- results-table: docs/results/recipe.md -->\n", 1)[1]
    table = table.split("\n\n", 1)[0].strip()
    assert table.startswith("| checkpoint |") and table.count("\n") >= 3
    assert table in (ROOT / "docs/results/recipe.md").read_text()


def test_the_chain_picture_is_drawn_from_the_registry():
    # Committed as drawn: tools/docs_reference.py --check (tests/test_docs_reference.py).
    svg = _tool("chain_diagram").render()
    for name in ("curation", "alignment", "preference", "evaluation", "scaling", "selection"):
        assert f">{name}" in svg, name


CHROMIUM = _tool("docs_screenshots").find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")
def test_pages_render_in_headless_chromium_with_images_and_navigation(site, tmp_path):
    screenshots = _tool("docs_screenshots")
    for page in screenshots.DEFAULT_PAGES:
        result = screenshots.check_page(site, page, tmp_path, CHROMIUM)
        assert not result["failures"], (page, result["failures"])
        assert result["nav_links"] >= 20
        assert result["screenshot"].stat().st_size > 20_000
    landing = screenshots.check_page(site, "index.html", tmp_path, CHROMIUM)
    assert any(src.endswith("chain.svg") for src in landing["images"])
    results = screenshots.check_page(site, "results/recipe/index.html", tmp_path, CHROMIUM)
    assert any(src.endswith(".png") for src in results["images"])


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")
def test_a_missing_image_fails_the_browser_check(site, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    (copy / "images/chain.svg").unlink()
    result = _tool("docs_screenshots").check_page(copy, "index.html", tmp_path, CHROMIUM)
    assert any("image not found" in f for f in result["failures"]), result["failures"]
