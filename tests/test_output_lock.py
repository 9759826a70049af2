"""One driver per output: a second one is refused at once, naming the holder; a killed driver's lock
is taken over. On a folder (flock) and on S3 (a lease with a heartbeat)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from curation.output_lock import OutputLock, OutputLocked
from dataset.storage import Store

CLI = [sys.executable, "-m", "driveanymesh"]
HOLD = """
import sys
from curation.output_lock import OutputLock
from dataset.storage import Store
lock = OutputLock(Store(sys.argv[1]), settle_s=0.2)
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin or kills it
"""


def holder(out: str, env=None) -> subprocess.Popen:
    """A process that holds the output's lock until killed; returns once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, out], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "held"  # an event, not a deadline
    return proc


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path):
    if request.param == "local":
        return {"url": str(tmp_path / "run"), "env": None}
    bucket = request.getfixturevalue("s3_bucket")
    return {"url": bucket["url"] + "/run", "env": bucket["env"]}


def test_a_second_driver_is_refused_naming_the_holder(out, tmp_path):
    proc = holder(out["url"], out["env"])
    try:
        pipelines = tmp_path / "pipelines.yaml"
        pipelines.write_text("tiny:\n  source: {kind: local, path: /nonexistent}\n")
        second = subprocess.run(CLI + ["--pipelines-file", str(pipelines), "run", "tiny", "--out", out["url"]],
                                capture_output=True, text=True, env=out["env"])
        assert second.returncode == 2
        assert f"in use by another driver (host {socket.gethostname()}, pid {proc.pid}" in second.stderr
    finally:
        kill(proc)


def test_a_killed_drivers_lock_is_taken_over(out):
    proc = holder(out["url"], out["env"])
    kill(proc)
    lock = OutputLock(Store(out["url"]), settle_s=0.2)
    lock.acquire()
    try:
        assert lock.taken_over["pid"] == proc.pid
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()}"):  # and now it is held again
            OutputLock(Store(out["url"]), settle_s=0.2).acquire()
    finally:
        lock.release()
    OutputLock(Store(out["url"]), settle_s=0.2).acquire()  # released: free again, nobody taken over


def test_a_lease_from_another_host_is_stale_only_without_heartbeat(s3_bucket):
    store = Store(s3_bucket["url"] + "/leased")
    other = {"host": "node-7", "pid": 1, "started": "2026-11-25T00:00:00+00:00", "token": "x"}
    store.write("driver.lock", json.dumps({**other, "heartbeat_unix": time.time()}).encode())
    with pytest.raises(OutputLocked, match="host node-7, pid 1"):
        OutputLock(store, settle_s=0.1).acquire()
    store.write("driver.lock", json.dumps({**other, "heartbeat_unix": time.time() - 120}).encode())
    lock = OutputLock(store, settle_s=0.1)
    lock.acquire()
    assert lock.taken_over["host"] == "node-7"
    lock.release()
    assert not store.exists("driver.lock")


def test_a_live_lease_from_another_pid_namespace_under_this_host_name_is_not_taken(s3_bucket):
    """Containers that share a host name (`--network host`, repeated pod names): a pid in the lease
    means nothing in another PID namespace, so a fresh lease naming this host and a pid no process
    here has is refused; the same lease from this namespace, its process gone, is taken at once."""
    from curation.output_lock import process_identity

    store = Store(s3_bucket["url"] + "/shared-host")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(ended.stdout)  # a pid that no process of this namespace has now
    here = process_identity()
    assert here is not None and here["pid"] == os.getpid()
    lease = {"host": socket.gethostname(), "pid": gone, "started": "2026-12-01T00:00:00+00:00", "token": "x",
             "heartbeat_unix": time.time()}
    store.write("driver.lock", json.dumps({**lease, "process": {**here, "pid": gone, "pid_namespace": "pid:[1]",
                                                                 "start": "1"}}).encode())
    with pytest.raises(OutputLocked, match=f"pid {gone}"):
        OutputLock(store, settle_s=0.1).acquire()
    store.write("driver.lock", json.dumps({**lease, "process": {**here, "pid": gone, "start": "1"}}).encode())
    lock = OutputLock(store, settle_s=0.1)
    lock.acquire()
    assert lock.taken_over["pid"] == gone
    lock.release()
    # this very process named with another start time: a pid reused since the holder ended
    store.write("driver.lock", json.dumps({**lease, "pid": os.getpid(), "process": {**here, "start": "1"}}).encode())
    lock = OutputLock(store, settle_s=0.1)
    lock.acquire()
    lock.release()
