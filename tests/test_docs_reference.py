"""The docs site's reference pages are generated from the code and cannot drift from it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from pydantic import Field, create_model

from sail_pipeline.schema import ProjectParams, RuntimeParams

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("docs_reference",
                                              ROOT / "tools/docs_reference.py")
docs_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(docs_reference)


def test_the_committed_page_is_what_the_generator_writes():
    result = subprocess.run([sys.executable, "tools/docs_reference.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_a_field_added_to_the_schema_without_regenerating_fails_the_check():
    runtime = create_model("RuntimeParams", __base__=RuntimeParams,
                           profile_every=(int, Field(0, description="steps between profiles")))
    tree = create_model("ProjectParams", __base__=ProjectParams,
                        runtime=(runtime, Field(default_factory=runtime)))
    assert docs_reference.is_current()
    assert not docs_reference.is_current(tree)
    assert "| `runtime.profile_every` | int | `0` | steps between profiles |" in \
        docs_reference.render(tree)


def test_every_key_of_the_schema_is_on_the_page():
    page = (ROOT / "docs/reference/parameters.md").read_text()
    for key in ("pretrain.alignment.lr", "sft.knowledge.micro_batch_size",
                "scaling.alignment", "selection.train", "curation.settings.max_alt_text_chars",
                "captioning.recaption.max_alt_text_chars", "evaluation.checkpoints"):
        assert f"`{key}`" in page, key
    assert "inherits `pretrain.alignment`" in page


def test_the_other_reference_pages_name_what_they_document():
    catalog = (ROOT / "docs/reference/catalog.md").read_text()
    assert "| `curation_manifest` |" in catalog and "`{table}_train`" in catalog
    commands = (ROOT / "docs/reference/command-line.md").read_text()
    assert "## `sail-report`" in commands and "--namespace" in commands
    assert "| `make run` |" in (ROOT / "docs/reference/make.md").read_text()


def test_the_readme_results_table_is_copied_from_its_results_page(tmp_path, monkeypatch):
    (tmp_path / "docs/results").mkdir(parents=True)
    (tmp_path / "docs/results/recipe.md").write_text(
        "# Results\n\n| stage | loss |\n|---|---|\n| llm | 1.0 |\n\n"
        "| checkpoint | average |\n|---|---|\n| knowledge | 47.0 |\n| preference | 46.3 |\n\n"
        "More.\n")
    (tmp_path / "README.md").write_text(
        "# x\n\n<!-- results-table: docs/results/recipe.md -->\n"
        "| checkpoint | average |\n|---|---|\n| knowledge | 50.3 |\n\nSFT makes it answer.\n")
    monkeypatch.setattr(docs_reference, "ROOT", tmp_path)
    assert docs_reference.render_readme() == (
        "# x\n\n<!-- results-table: docs/results/recipe.md -->\n"
        "| checkpoint | average |\n|---|---|\n| knowledge | 47.0 |\n| preference | 46.3 |\n\n"
        "SFT makes it answer.\n")
