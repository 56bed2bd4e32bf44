"""Helpers shared by the CLI tests: run the real CLI, check the SPEC §6 error shape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m dreamerctl ARGS` in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("DREAMERCTL_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "dreamerctl", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    """The SPEC §6 error shape: exit code, exactly one `error:` line, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def dead_pid() -> int:
    """A process id that no process has now."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid -= 1
