"""The launch buttons. Colab opens a notebook without classsel: the first code cell of every notebook
installs it from the repository named in _config.yml, and does nothing where classsel is importable.
(Binder builds from binder/: its pins are checked in test_environment.py.)"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def install_cell() -> str:
    return code_cells(NOTEBOOKS[0])[0].source


def test_every_notebook_opens_with_the_same_install_cell():
    assert len(NOTEBOOKS) == 8  # the six chapters, the claims page and the other architectures
    for path in NOTEBOOKS:
        cells = code_cells(path)
        first = cells[0]
        assert first.source == install_cell(), f"{path.name}: install cell unlike {NOTEBOOKS[0].name}'s"
        assert "remove-cell" in first.metadata.get("tags", []), f"{path.name}: the book must not show it"
        tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
        assert tagged and tagged[0] > 0, f"{path.name}: the install cell must come before the parameters cell"
    # the repository of the book's buttons, once
    assert install_cell().count(f'"{URL}"') == 1, f"the install cell must install from {URL} (_config.yml)"


def test_the_cell_does_nothing_where_classsel_is_importable(monkeypatch, capsys):
    def no_process(*args, **kwargs):
        raise AssertionError(f"the install cell started a process: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)  # what run and check_call start processes with
    exec(install_cell(), {})
    assert capsys.readouterr() == ("", "")


def run(args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_the_cell_installs_classsel_in_a_fresh_environment(tmp_path):
    """A new venv (no system site-packages) and a git clone of this tree stand in for Colab and GitHub.
    PIP_NO_DEPS makes the cell's pip install classsel alone: its dependencies (torch, 5 GB) are
    pyproject's business, checked elsewhere; here the question is the cell."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the cell installs classsel from a git repository")
    # no PYTHONPATH, and a working folder outside this tree: classsel must not be importable from here
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "classsel", repo / "classsel", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, repo / name)
    git = ["git", "-C", repo, "-c", "user.name=test", "-c", "user.email=test@example.org",
           "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "classsel"]):
        assert run(git + args, env=env).returncode == 0, args
    made = run([sys.executable, "-m", "venv", tmp_path / "venv"], env=env)
    assert made.returncode == 0, made.stderr
    python = tmp_path / "venv" / "bin" / "python"

    def found(module):
        probe = f"import importlib.util as u; s = u.find_spec({module!r}); print(s and s.origin)"
        return run([python, "-c", probe], env=env, cwd=tmp_path).stdout.strip()

    assert found("classsel") == "None"
    # "localhost": the pip that ensurepip brings with Python 3.11 refuses a URL requirement without a host
    cell = install_cell().replace(f'"{URL}"', f'"file://localhost{repo}"')
    installed = run([python, "-c", cell], env={**env, "PIP_NO_DEPS": "1"}, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert found("classsel").startswith(str(tmp_path / "venv")), found("classsel")
    assert found("torch") == "None", "the test must not install torch"

    # installed now: a second run does nothing, though its repository does not exist
    again = run([python, "-c", install_cell().replace(f'"{URL}"', f'"file://{tmp_path / "absent"}"')],
                env=env, cwd=tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
