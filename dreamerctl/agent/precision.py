"""`run.precision`: fp32, bf16 autocast, or `auto`, which is bf16 where the hardware computes in
it natively and fp32 elsewhere (issue 24).

Natively means a CUDA device that supports bf16, or a CPU with AMX (`amx_bf16`) or AVX512-BF16
(`avx512_bf16`). There bf16 pays: on one core of a Xeon with AMX a `vision_cpu` update takes
0.54 s against 0.76 s in fp32 (benchmarks/RESULTS.md); an AMD EPYC with AVX512-BF16 and no AMX
measured a bf16 matmul peak 4.2x its fp32 one (issue 24, an earlier session). Without either,
bf16 is emulated: on an AVX2-only AMD EPYC (Zen 3) a bf16 matrix product ran at ~1 GFLOP/s,
60x slower than fp32, so an explicit `bf16` there is warned about.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger("dreamerctl.agent")

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags() -> set[str]:
    """The feature flags of this machine's CPU (Linux); empty where they cannot be read."""
    try:
        with CPUINFO.open() as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def native_cpu_flags() -> list[str]:
    """Which of BF16_CPU_FLAGS this CPU has."""
    flags = cpu_flags()
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 or bf16 for `precision` on `device` (see the module docstring); `auto` says what it
    chose and why in the log."""
    if precision == "bf16" and device.type == "cpu" and not native_cpu_flags():
        log.warning("run.precision bf16 on a CPU with neither %s: bf16 is emulated here, "
                    "matrix products run tens of times slower than fp32 (run.precision=auto "
                    "picks fp32)", " nor ".join(BF16_CPU_FLAGS))
    if precision != "auto":
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        reason = f"{torch.cuda.get_device_name(device)} {'has' if native else 'lacks'} bf16"
    else:
        flags = native_cpu_flags()
        native = bool(flags)
        reason = f"the CPU has {' and '.join(flags)}" if flags else "the CPU has neither " \
            f"{' nor '.join(BF16_CPU_FLAGS)}"
    chosen = "bf16" if native else "fp32"
    log.info("run.precision auto: %s (%s)", chosen, reason)
    return chosen
