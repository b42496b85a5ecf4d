"""The README's promises: CI runs exactly its test command, its demo command is the documented one, its library
example runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pnp.cli import check_composition

ROOT = Path(__file__).resolve().parent.parent


def bash_blocks(page: Path = ROOT / "README.md") -> list[str]:
    return re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)


def documented_commands() -> list[list[str]]:
    """Every ``… -m pnp.<entry> …`` command (python, torchrun) of the bash blocks of the README and the docs pages
    (continued lines joined, comments dropped), as [module, *arguments]."""
    commands = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in bash_blocks(page):
            for line in block.replace("\\\n", " ").splitlines():
                for command in line.split("&&"):  # setup && .venv/bin/python -m pnp.solve …; torchrun … -m pnp.train
                    words = shlex.split(command, comments=True)
                    starts = [i for i, w in enumerate(words[:-1]) if w == "-m" and words[i + 1].startswith("pnp.")]
                    commands += [words[i + 1 :] for i in starts]
    return commands


def command_after(comment: str) -> str:
    for block in bash_blocks():
        lines = block.strip().splitlines()
        if lines[0].startswith("#") and comment in lines[0]:
            return lines[1].strip()
    raise AssertionError(f"no README block introduced by {comment!r}")


def test_ci_runs_exactly_the_readme_test_command():
    test_command = command_after("run the tests")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
    assert "pytest" in test_command and "pip install" in test_command


def test_demo_command_sets_up_and_runs_the_deblur_demo():
    demo = command_after("run the demo")
    assert "pip install" in demo and demo.endswith("-m pnp.solve +problem=deblur")


@pytest.mark.parametrize("command", documented_commands(), ids=" ".join)
def test_every_documented_command_composes(command):
    """The entry point's composition check (an unknown key, option or group) passes on each documented command line;
    files it names need not exist."""
    module, *argv = command
    entry = module.removeprefix("pnp.")
    assert check_composition(argv, entry) is None


def test_every_file_the_readme_links_to_exists():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)\)", text) + re.findall(r"`(benchmarks/results/[^`*\s]+)`", text)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links to its results"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing


def test_the_library_example_runs_on_a_smaller_image(capsys):
    """The README's Python block, as written but on a 64² camera (its 256² run takes a minute and a half)."""
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert 'load_image("camera", size=256)' in block
    namespace: dict = {"__name__": "__main__"}
    exec(compile(block.replace("size=256", "size=64"), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.converged and result.verdict.covered
    assert result.verdict.theorem in capsys.readouterr().out  # what it prints
