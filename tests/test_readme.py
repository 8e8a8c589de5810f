"""The README's two commands are the ones CI runs and the main job."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.split("```", 1)[0].strip() for b in text.split("```bash\n")[1:]]


def test_ci_runs_exactly_the_readme_test_command():
    readme = _bash_blocks((ROOT / "README.md").read_text())
    main_cmd, test_cmd = readme[0], readme[1]
    assert main_cmd.endswith("netprobe summary efficientnetv2_s")
    assert test_cmd.endswith("python -m pytest")
    assert main_cmd.startswith("python3 -m venv .venv") and "pip install torch==2.13.0 &&" in main_cmd
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert test_cmd in ci_lines


def test_every_data_file_of_the_package_is_in_its_package_data():
    """A wheel (pip install netprobe, not -e) carries only the data files pyproject names: the GPU table and
    the fitted efficiencies were left out once, and predict would not start from a wheel."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = ROOT
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    missing = []
    for path in (root / "netprobe").rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        owner = path.parent
        while not (owner / "__init__.py").is_file():
            owner = owner.parent
        package = ".".join(owner.relative_to(root).parts)
        inside = path.relative_to(owner).as_posix()
        if not any(fnmatch.fnmatch(inside, pattern) for pattern in package_data.get(package, [])):
            missing.append(path.relative_to(root).as_posix())
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
