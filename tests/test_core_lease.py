"""Blender jobs side by side hold distinct cores, and a job keeps to the cores it was given."""
import os
import subprocess
import sys

import pytest

from render.core_lease import ENV, CoreLease

needs_two = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")


@pytest.fixture(autouse=True)
def private_leases(tmp_path, monkeypatch):
    """Leases of their own: Blender jobs of a pipeline running beside the tests hold the node's."""
    monkeypatch.setattr("render.core_lease.LOCK_DIR", str(tmp_path / "cores"))


@needs_two
def test_leases_hold_distinct_cores_until_released():
    with CoreLease(1) as a, CoreLease(1) as b:
        assert len(a.cores) == len(b.cores) == 1 and a.cores != b.cores
        assert a.env() == {ENV: str(a.cores[0])}
    with CoreLease(1) as c:  # released on exit: a core is free again
        assert len(c.cores) == 1


def test_no_free_core_means_unpinned():
    n = len(os.sched_getaffinity(0))
    with CoreLease(n) as everything:
        assert len(everything.cores) == n
        with CoreLease(1) as late:
            assert late.cores == [] and late.env() == {}
    assert CoreLease(0).cores == []


def test_job_process_keeps_to_its_cores():
    with CoreLease(1) as lease:
        out = subprocess.run(
            [sys.executable, "-c", "import os; from render.core_lease import pin_from_env; "
             "pin_from_env(); print(sorted(os.sched_getaffinity(0)))"],
            env={**os.environ, **lease.env()}, capture_output=True, text=True, check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert out.stdout.strip() == str(lease.cores)
