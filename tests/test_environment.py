"""The conda/Binder environment describes the same packages as pyproject.toml."""

import re
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def names(requirements):
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in requirements}


def environment_names():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found = set()
    for dep in env["dependencies"]:
        found |= names(dep["pip"]) if isinstance(dep, dict) else names([dep])
    return found


def test_every_dependency_is_in_environment_yml():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        required |= names(extra)
    missing = required - environment_names()
    assert not missing, f"in pyproject.toml but not environment.yml: {sorted(missing)}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
