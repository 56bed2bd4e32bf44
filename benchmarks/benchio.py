"""What every benchmark script reports the same way: the CPU's name and one result dict, as one
JSON line or as aligned `key: value` lines. No dreamerctl or torch import, so that a peer's
timing wrapper (benchmarks/peers/) can use it from the peer's own venv."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any


def cpu_model() -> str:
    """lscpu's model name, from /proc/cpuinfo; platform.processor() where that cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_result(result: dict[str, Any], as_json: bool) -> None:
    """The result on stdout: one JSON object (`--json`) or one `key: value` line per field."""
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    width = max(map(len, result), default=0)
    for key, value in result.items():
        sys.stdout.write(f"{key:>{width}}: {value}\n")
