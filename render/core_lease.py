"""Pin each Blender job to its own CPU cores on the node.

With a fixed render thread count, Blender still keeps a second thread busy (about 0.6 s of CPU per
second of rendering here, doing no useful work: pinned to one core the job renders exactly as fast
with half the CPU). Two jobs side by side then steal each other's cores. A job that holds its own
cores does not. Cores are leased through lock files shared by every process on the node
(`flock`, released by the kernel however the holder ends), so jobs started by different Ray workers
never pick the same core; when every core is taken the job runs unpinned.
"""
from __future__ import annotations

import fcntl
import os
import tempfile

LOCK_DIR = os.path.join(tempfile.gettempdir(), "driveanymesh-cores")
ENV = "DRIVEANYMESH_CPU_CORES"  # read by render.blender_job before bpy starts its threads


class CoreLease:
    """`n` cores of this process's affinity mask, held until `release()` (or the process ends)."""

    def __init__(self, n: int):
        self.cores: list[int] = []
        self._files = []
        if n <= 0:
            return
        os.makedirs(LOCK_DIR, exist_ok=True)
        for core in sorted(os.sched_getaffinity(0)):
            f = open(os.path.join(LOCK_DIR, f"{core}.lock"), "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self._files.append(f)
            self.cores.append(core)
            if len(self.cores) == n:
                return
        self.release()  # not enough free cores: unpinned rather than sharing a core

    def env(self) -> dict:
        return {ENV: ",".join(map(str, self.cores))} if self.cores else {}

    def release(self) -> None:
        for f in self._files:
            f.close()
        self._files, self.cores = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def pin_from_env() -> None:
    """In the job: keep to the leased cores (threads started afterwards inherit the mask)."""
    cores = os.environ.get(ENV)
    if cores:
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
