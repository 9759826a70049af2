"""A Blender job ends when its launcher dies.

The job runs in its own session (so a timeout can kill its whole process group), which also means
that when the launcher's process is killed (a lost Ray worker, a SIGKILLed CLI) nothing stops the
job: it would render on as an orphan, on cores no longer leased to it. The kernel's parent-death
signal closes that hole (Linux; elsewhere a no-op).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

LAUNCHER_PID_ENV = "DRIVEANYMESH_LAUNCHER_PID"
PR_SET_PDEATHSIG = 1


def exit_with_launcher() -> None:
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(launcher):  # it died before the signal was armed
        os._exit(1)
