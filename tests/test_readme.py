"""The README's two commands are the ones CI runs and the main job."""

from pathlib import Path

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
