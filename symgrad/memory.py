"""How much memory this machine (or its GPU) can give now, and how symgrad writes a size.

The one owner of both facts: a network, a run and a data set are each checked against
``available()`` before they are allocated (runtime.memory, data.base), so that what cannot fit
is refused in one line naming the figures, not met by a MemoryError midway.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import UserError


class TooLarge(UserError, MemoryError):
    """What was asked for cannot fit in the memory available: one line with both figures."""


def available(xp=np) -> int:
    """Bytes that can be allocated now: the GPU's free memory (with what CuPy's pool holds
    free) for CuPy arrays; else the smaller of the system's estimate (MemAvailable) and what a
    container's memory limit leaves."""
    if xp is not np:
        return int(xp.cuda.runtime.memGetInfo()[0]) + int(xp.get_default_memory_pool().free_bytes())
    found = [_meminfo()]
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v1
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as a, open(usage) as b:
                found.append(int(a.read()) - int(b.read()))
        except (OSError, ValueError):  # absent, or "max": no limit
            pass
    return max(0, min(found))


def _meminfo() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def size_text(nbytes: float) -> str:
    """A byte count as people read it: 512 B, 3.2 MiB, 98.5 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
