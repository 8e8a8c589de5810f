"""What every test of bad input checks through the CLI: exit code 2, one line on stderr, no traceback."""

from __future__ import annotations


def one_error_line(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.output
