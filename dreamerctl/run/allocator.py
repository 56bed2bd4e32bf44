"""The C allocator's settings for a training process (issue 24: the `imag_starts = "last"`
anomaly).

glibc's malloc hands blocks above its mmap threshold (128 KiB at first, rising with what is
freed, to 32 MiB at most) to the kernel one by one, and returns the top of its heap to the
kernel once more than the trim threshold is free there. An update allocates and frees the same
large tensors every time, so with the defaults every update asks the kernel for fresh,
zero-filled pages and faults them in again. How much depends on what else the update frees:
with `imag_starts = "last"` the world-model half of a `small` fp32 update took 4.0 s against
2.5 s with `"all"`, for the same work (a 2-core Xeon; RESULTS, "The allocator"). Keeping freed
memory in the process for the next update removes it: 2.5 s with both, and a bf16 `"all"`
update went from 3.6 to 2.5 s. The price is a higher peak RSS (2.5 -> 2.9 GB for `small`),
since memory freed is kept rather than given back.

Only glibc has these knobs (Linux with another C library, macOS and Windows keep their
allocator). A user's own `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` wins: then
nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("dreamerctl")

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
KEEP = 2**31 - 1       # bytes: the largest value mallopt takes, i.e. never
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc, else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def keep_freed_memory(quiet: bool = False) -> bool:
    """Make glibc's malloc keep large freed blocks for reuse instead of returning them to the
    kernel (mmap and trim thresholds at 2 GiB), unless the user set either threshold; logs
    what it did and returns whether it changed anything."""
    level = logging.DEBUG if quiet else logging.INFO
    user = [name for name in USER_SETTINGS if name in os.environ]
    if user:
        log.log(level, "malloc: %s set by the environment, left as it is", " and ".join(user))
        return False
    libc = glibc()
    if libc is None:
        log.debug("malloc: not glibc, left as it is")
        return False
    done = libc.mallopt(M_MMAP_THRESHOLD, KEEP) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP) == 1
    if done:
        log.log(level, "malloc: freed memory kept for reuse (glibc mmap and trim thresholds "
                       "at 2 GiB): updates do not fault their tensors in again")
    else:
        log.warning("malloc: glibc refused the mmap and trim thresholds; updates may run slower")
    return done
