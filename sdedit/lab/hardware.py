"""What the lab's trainers (train, features) ask of the machine: the CPU's name and whether bf16 pays on it."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "CPU"


@cache
def has_bf16_cpu() -> bool:
    """AMX or AVX512-BF16: the CPUs on which bf16 autocast is faster, not slower. Read once: every live preview
    asks (`studio.live.preview_dtype`), and a CPU's flags do not change while the process runs."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags
