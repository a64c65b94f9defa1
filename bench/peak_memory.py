"""Peak memory of the running process, for the benchmarks' flat-memory figures.

`resource.getrusage(...).ru_maxrss` is the wrong tool in a child process: Linux keeps the
maximum across fork and exec (getrusage(2)), so a child started by a big benchmark process
reports the parent's peak, not its own. The kernel's high-water mark of the process's own
memory, VmHWM in /proc/self/status, starts afresh at exec; it is used where it exists.
"""

from __future__ import annotations

import resource
import sys


def peak_rss_mib() -> float:
    """The peak resident set size of this process since it started (exec), in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024
