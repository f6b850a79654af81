"""The docs site (mkdocs.yml) as a specification: it builds offline with no broken link, reads
offline (nothing loaded from elsewhere), and its generated reference pages hold every command,
every `QC_*` variable and every route; the hand-written guides stay true to the code they
describe. One build, ~5 s."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("inspection", "serving", "training", "labeling", "agent", "qc")


def reference_module():
    spec = importlib.util.spec_from_file_location("docs_reference", REPO / "scripts" / "docs_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                            "-d", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert built.returncode == 0, built.stderr[-4000:]  # --strict: a broken link or anchor fails
    return out


def test_the_site_builds_with_a_guide_per_person_and_the_generated_references(site):
    for page in ("index", "guides/line-engineer", "guides/reviewer-card", "guides/spc-glossary", "guides/ml-loop",
                 "guides/it-deployment", "station", "review", "analytics", "serving", "deploy", "architecture"):
        assert (site / f"{page}.html").is_file(), page
    cli = (site / "reference" / "cli.html").read_text()
    assert "qc loop" in cli and "--check" in cli and "qc models add" in cli and "--weights" in cli
    settings = (site / "reference" / "settings.html").read_text()
    assert "QC_LOOP_RECIPE" in settings and "QC_TIMEZONE" in settings and "QC_LABEL_DATASET" in settings
    http = (site / "reference" / "http.html").read_text()
    assert "/v1/loop/run" in http and "/v1/stations/{station}/inspect" in http and "JobOut" in http
    assert (site / "reference" / "openapi.json").is_file()
    assert not any((REPO / "docs" / "reference").glob("*.md"))  # generated in memory, never committed


def test_the_site_loads_nothing_from_elsewhere(site):
    outside = re.compile(r'<(?:link|script|img|iframe)\b[^>]*\b(?:href|src)="(?:https?:)?//', re.I)
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not outside.search(text), page
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page


def test_every_qc_variable_in_the_source_is_on_the_settings_reference():
    reference = reference_module().settings_reference()
    named = set()
    for folder in SOURCES:
        for path in (REPO / folder).rglob("*.py"):
            named |= set(re.findall(r"\bQC_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    named -= {"QC_PREFIX"}  # a Python constant (the "qc_" metadata prefix), not a variable
    # QC_<NAME>_FILE is documented once, as the pattern, beside each QC_<NAME>.
    lacking = sorted(name for name in named if f"`{name}`" not in reference
                     and not (name.endswith("_FILE") and f"`{name[:-5]}`" in reference))
    assert len(named) > 50 and lacking == []


def test_the_ml_guide_names_every_prerequisite_the_loop_check_knows():
    from training.loop_check import Prerequisite

    guide = (REPO / "docs" / "guides" / "ml-loop.md").read_text()
    assert [item.value for item in Prerequisite if f"| `{item.value}` |" not in guide] == []


def test_the_review_key_tables_list_every_letter_key_the_review_page_handles():
    script = (REPO / "serving" / "pages" / "static" / "review.js").read_text()
    handler = script[script.index("function handleKey"):]
    handler = handler[:handler.index("\n  }\n")]
    keys = {key.upper() for key in re.findall(r'case "([a-z])":', handler)}
    assert "R" in keys
    for doc in ("review.md", "guides/reviewer-card.md"):
        text = (REPO / "docs" / doc).read_text()
        tables = "\n".join(line for line in text.splitlines() if line.startswith("| `"))
        assert sorted(key for key in keys if f"`{key}`" not in tables) == [], doc


def test_no_doc_says_serve_help_lists_every_setting():
    for path in [*(REPO / "docs").rglob("*.md"), REPO / "README.md"]:
        text = " ".join(path.read_text().split())
        assert "`qc serve --help` and `serving/settings.py` list them all" not in text, path
