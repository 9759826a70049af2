"""One driver per output: a second driver on the same `--out` would overwrite the first one's shards
and manifest, so it stops at once and names the holder; a lock a killed driver left is taken over.

On a POSIX filesystem (a local disk, NFS, a mounted bucket that supports it) the lock is `flock` on
`driver.lock`: the kernel releases it however the holder ends, so a killed driver's lock is free at
once and nothing depends on clocks. An object store has no locks: there `driver.lock` is a lease,
an object naming its holder and refreshed every `HEARTBEAT_S` by a thread. A lease is stale when its
heartbeat is older than `STALE_S`, or at once when its holder's process is provably gone: the lease
names the holder's process by its kernel boot, PID namespace, pid and start time (`process`), and
only a driver that sees the same boot and namespace can look that process up. A host name and pid
alone prove nothing: containers with `--network host` or repeated pod names share a host name, and
their pids belong to other namespaces. A holder is told apart by a random token written at start.
Taking a lease is write-then-confirm (write our token, wait `SETTLE_S`, read it back: of two drivers
racing, the one whose token stayed holds it); a holder that finds another token at its next heartbeat
has lost the lease, and the run stops rather than write beside the new holder.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

from dataset.storage import Store

LOCK = "driver.lock"
HEARTBEAT_S = 10.0
STALE_S = 60.0   # six missed heartbeats: a driver that slow is as good as gone
SETTLE_S = 2.0   # longer than a PUT takes to be visible to every reader (S3 is read-after-write)


class OutputLocked(RuntimeError):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if gone."""
    stat = _read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[1].split()[19] if stat else None


def process_identity(pid: int | None = None) -> dict | None:
    """What names a process uniquely on this machine: boot id, PID namespace, pid, start time; None
    where /proc does not say (then only heartbeats can tell a lease is stale)."""
    pid = os.getpid() if pid is None else pid
    boot, start = _read("/proc/sys/kernel/random/boot_id"), _start_time(pid)
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    if not (boot and start and namespace):
        return None
    return {"boot": boot, "pid_namespace": namespace, "pid": pid, "start": start}


def _provably_gone(process: dict | None) -> bool:
    """True only when `process` (a lease's process_identity) is in this boot and PID namespace and no
    process with its pid and start time runs."""
    here = process_identity()
    if not process or not here or (process.get("boot"), process.get("pid_namespace")) != \
            (here["boot"], here["pid_namespace"]):
        return False
    return _start_time(int(process.get("pid", -1))) != process.get("start")


def describe(holder: dict) -> str:
    return (f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}"
            + (f", last heartbeat {holder['heartbeat']}" if holder.get("heartbeat") else ""))


class OutputLock:
    """`with OutputLock(store):` holds the output for one driver. `taken_over`: the holder whose
    lock was stale (None if the output was free). `lost`: an object-store lease another driver took."""

    def __init__(self, store: Store, stale_s: float = STALE_S, heartbeat_s: float = HEARTBEAT_S,
                 settle_s: float = SETTLE_S):
        self.store, self.stale_s, self.heartbeat_s, self.settle_s = store, stale_s, heartbeat_s, settle_s
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "started": _now(),
                   "token": uuid.uuid4().hex, "process": process_identity()}
        self.taken_over: dict | None = None
        self.lost = False
        self._file = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _refuse(self, holder: dict, why: str = "") -> None:
        raise OutputLocked(f"{self.store.root} is in use by another driver ({describe(holder)}){why}. Wait for "
                           f"it to finish or stop it; a killed driver's lock is taken over automatically")

    def acquire(self) -> None:
        if self.store.local:
            self._acquire_flock()
        else:
            self._acquire_lease()

    # --- POSIX: flock, released by the kernel --------------------------------------------------
    def _acquire_flock(self) -> None:
        path = os.path.join(self.store.root, LOCK)
        os.makedirs(self.store.root, exist_ok=True)
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = _parse(f.read())
            f.close()
            self._refuse(holder)
        f.seek(0)
        self.taken_over = _parse(f.read()) or None  # a previous holder's record: it was killed
        f.seek(0)
        f.truncate()
        f.write(json.dumps(self.me))
        f.flush()
        self._file = f

    # --- object store: a lease with a heartbeat -------------------------------------------------
    def _read_lease(self) -> dict:
        try:
            return _parse(self.store.read(LOCK).decode())
        except FileNotFoundError:
            return {}

    def _stale(self, holder: dict) -> bool:
        if _provably_gone(holder.get("process")):
            return True
        beat = holder.get("heartbeat_unix", 0.0)
        return time.time() - beat > self.stale_s

    def _write_lease(self) -> None:
        self.store.write(LOCK, json.dumps({**self.me, "heartbeat": _now(), "heartbeat_unix": time.time()}).encode())

    def _acquire_lease(self) -> None:
        holder = self._read_lease()
        if holder and not self._stale(holder):
            self._refuse(holder, f"; a lease without heartbeat for {self.stale_s:g} s is taken over")
        self._write_lease()
        time.sleep(self.settle_s)  # part of the protocol: a racing driver's write lands within it
        now = self._read_lease()
        if now.get("token") != self.me["token"]:
            self._refuse(now)
        self.taken_over = holder or None
        self._thread = threading.Thread(target=self._heartbeat, name="output-lock", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self._read_lease().get("token") != self.me["token"]:
                    self.lost = True
                    return
                self._write_lease()
            except Exception:  # a storage hiccup: try again at the next beat (stale only after many)
                continue

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()  # an empty record: nobody to name as a killed holder
            self._file.close()     # closes the flock
            self._file = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if not self.lost and self._read_lease().get("token") == self.me["token"]:
                self.store.delete(LOCK)


def _parse(text: str) -> dict:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:  # a record torn by a kill: the holder is unknown, the lock still means what it means
        return {"host": "?", "pid": "?", "started": "?"}
