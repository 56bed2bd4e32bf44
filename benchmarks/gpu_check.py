"""The GPU check of issue 24, in under 8 minutes on a machine with an NVIDIA GPU.

    bash benchmarks/gpu_check.sh [--output gpu_check.json]

1. the CUDA-only tests (`pytest -m cuda`);
2. `bench_update.py --device cuda --preset small --precision bf16`, eager and with
   `run.compile=reduce-overhead` (compiling happens in its warm-up): ms/update, GPU peak memory,
   achieved TFLOP/s against the measured bf16 matmul peak;
3. `dreamerctl train atari_pong --preset atari100k` for 3 minutes, stopped with Ctrl-C as a
   user would: env fps and updates/s from its metrics.jsonl.

Writes one JSON summary (and prints it). Without a CUDA device it exits at once with one
`error:` line and code 1. Each part has a time limit, and a part that fails or runs out of time
is recorded as such, so the summary always comes back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SECONDS = 180


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--train-seconds", type=float, default=TRAIN_SECONDS)
    return parser.parse_args(argv)


def cuda_device() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run(command: list[str], timeout: float) -> tuple[int | None, str, str]:
    """(exit code or None on timeout, stdout, stderr tail)."""
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        return None, out, "timed out"
    return result.returncode, result.stdout, "\n".join(result.stderr.splitlines()[-5:])


def cuda_tests() -> dict[str, Any]:
    code, out, err = run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p",
                          "no:cacheprovider"], timeout=150)
    return {"exit_code": code, "summary": (out.strip().splitlines() or [err])[-1]}


def bench(compile_mode: str) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_update.py"), "--device", "cuda",
               "--preset", "small", "--precision", "bf16", "--updates", "30", "--warmup", "5",
               "--json", "--set", f'run.compile="{compile_mode}"']
    code, out, err = run(command, timeout=150 if compile_mode == "off" else 240)
    if code != 0 or not out.strip():
        return {"compile": compile_mode, "exit_code": code, "error": err}
    result = json.loads(out.strip().splitlines()[-1])
    return {"compile": compile_mode, "ms_per_update": result["ms_per_update"],
            "gpu_peak_mb": result["gpu_peak_mb"], "warmup_s": result["warmup_s"],
            "achieved_tflop_s": result["achieved_gflop_s"] / 1e3,
            "peak_tflop_s_bf16": result["peak_gflop_s_bf16"] / 1e3,
            "peak_fraction": result["peak_fraction"], "device_name": result["device_name"]}


def train_atari(seconds: float) -> dict[str, Any]:
    logdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    command = [sys.executable, "-m", "dreamerctl", "train", "atari_pong", "--preset",
               "atari100k", "--logdir", str(logdir), "--set", "run.log_every=15"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    lines = [json.loads(line) for path in logdir.glob("dreamer_*/*/metrics.jsonl")
             for line in path.read_text().splitlines() if line.strip()]
    rates = [line for line in lines if line.get("train/updates_per_s")]
    last = rates[-1] if rates else (lines[-1] if lines else {})
    return {"seconds": seconds, "exit_code": process.returncode, "frames": last.get("step"),
            "env_fps": last.get("fps/env"), "updates_per_s": last.get("train/updates_per_s"),
            "updates": last.get("train/updates"), "logdir": str(logdir),
            "stderr_tail": "\n".join(err.splitlines()[-3:])}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = cuda_device()
    if device is None:
        sys.stderr.write("error: gpu_check needs an NVIDIA GPU: torch sees no CUDA device "
                         f"(torch {__import__('torch').__version__})\n")
        return 1
    start = time.perf_counter()
    summary: dict[str, Any] = {"device": device, "torch": __import__("torch").__version__,
                               "host": os.uname().nodename}
    summary["cuda_tests"] = cuda_tests()
    summary["update"] = [bench("off"), bench("reduce-overhead")]
    summary["train_atari100k"] = train_atari(args.train_seconds)
    summary["wall_s"] = time.perf_counter() - start
    text = json.dumps(summary, indent=2)
    args.output.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
