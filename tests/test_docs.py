"""The documentation: the site builds with warnings as errors, and every example and the getting-started page run."""

from __future__ import annotations

import html
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    site = tmp_path / "site"
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)]
    done = subprocess.run(build, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    api = (site / "api" / "schemes" / "index.html").read_text()
    assert 'id="pnp.schemes.Scheme.run"' in api  # the reference is generated from the docstrings
    assert ":class:`" not in api and ":func:`" not in api  # the docstrings' Sphinx roles became links or code
    examples = html.unescape(re.sub(r"<[^>]+>", "", (site / "examples" / "index.html").read_text()))
    for path in EXAMPLES:  # each script is embedded, not only named
        assert path.read_text().splitlines()[0] in examples, path.name


def test_every_example_is_on_the_examples_page():
    page = (DOCS / "examples.md").read_text()
    embedded = set(re.findall(r'--8<-- "docs/examples/([\w]+\.py)"', page))
    assert embedded == {p.name for p in EXAMPLES}
    required = {"inpainting.py", "super_resolution.py", "mri.py", "custom_denoiser.py", "batch.py", "history.py"}
    assert required <= embedded


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_passes_its_own_checks(path, capsys):
    """Each example ends with its assertions (converged, PSNR above the initialisation, ...) and prints its result."""
    runpy.run_path(str(path), run_name="__main__")
    assert "dB" in capsys.readouterr().out


def test_getting_started_runs_as_one_script(capsys):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "getting-started.md").read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {"__name__": "__main__"}
    for block in blocks:
        exec(compile(block, "getting-started.md", "exec"), namespace)
    assert namespace["result"].converged
