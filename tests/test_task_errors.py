"""What a render task that raised is recorded as: Ray's loss of a worker is `worker_lost`, a storage
error `storage_error` (transient, healed by `--retry-errors` once the store is fixed), anything else
`error` with its traceback; a path that is not there is a one-line error, and Ctrl-C stops a run
with a one-line message after which the same command finishes it."""
import json
import os
import signal
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from curation.audit import why
from curation.task_errors import classify
from tests.conftest import tiny_pipelines_file

CLI = [sys.executable, "-m", "driveanymesh"]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import tests/
    ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


def raised_by(ray, fn):
    try:
        ray.get(ray.remote(max_retries=0)(fn).remote())
    except Exception as exc:  # noqa: BLE001 - what the driver's ray.get sees
        return exc
    raise AssertionError("the task did not raise")


def _a_bug_in_the_pipeline():
    return {"a": 1}["b"]


def _the_store_fails():
    raise PermissionError(13, "Permission denied", "/out/thumbs/ab/x.png")


def _a_store_client_fails():
    from botocore.exceptions import EndpointConnectionError

    raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/bucket")


def _the_worker_dies():
    os._exit(1)


def test_a_task_that_raised_is_classified_by_what_it_raised(ray_local):
    rule, reasons = classify(raised_by(ray_local, _a_bug_in_the_pipeline))
    assert rule == "error"
    assert reasons[0] == "KeyError: 'b'"
    assert "in _a_bug_in_the_pipeline" in reasons[1] and reasons[1].endswith("KeyError: 'b'")  # where raised
    assert "\x1b[" not in reasons[1]  # no terminal colour in an audit row

    rule, reasons = classify(raised_by(ray_local, _the_store_fails))
    assert rule == "storage_error" and reasons[0].startswith("PermissionError: ")
    assert classify(raised_by(ray_local, _a_store_client_fails))[0] == "storage_error"  # not an OSError

    rule, reasons = classify(raised_by(ray_local, _the_worker_dies))
    assert rule == "worker_lost" and len(reasons) == 1


def test_audit_why_indents_a_recorded_traceback():
    rows = [{"uid": "u", "stage": "render", "status": "error", "rule": "error",
             "reasons": ["KeyError: 'b'", "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'b'"]}]
    lines = why(rows, "u").splitlines()
    tb = lines.index(next(ln for ln in lines if "Traceback" in ln))
    assert lines[tb].strip().startswith("reason: Traceback")
    assert lines[tb + 1].startswith(" " * 12 + "  File")  # under the reason, not at the margin


@pytest.mark.slow
def test_a_broken_output_store_is_a_storage_error_that_retry_heals(tmp_path, demo_assets):
    out = tmp_path / "run"
    out.mkdir()
    (out / "thumbs").write_text("")  # a file where the thumbnails' folder goes: every write under it fails
    pipelines = tiny_pipelines_file(tmp_path, [demo_assets["rigid_spinner"]["path"]])
    cmd = CLI + ["--pipelines-file", pipelines, "run", "tiny", "--out", str(out), "--workers", "1"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    table = pq.read_table(out / "audit.parquet").to_pandas()
    asset = table[(table.stage == "asset")].iloc[0]
    assert asset.status == "error" and asset.rule == "storage_error", (asset.rule, first.stderr[-2000:])
    assert json.loads(asset["values"])["transient"] is True
    render = table[(table.stage == "render") & (table.rule == "storage_error")].iloc[0]
    assert "File \"" in render.reasons[1] and "thumbs" in render.reasons[0]  # and where it was raised

    (out / "thumbs").unlink()  # the store is fixed
    again = subprocess.run(cmd + ["--retry-errors"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "verified: 1 accepted clips" in again.stdout


@pytest.mark.slow
def test_a_task_that_fails_after_staging_a_clip_leaves_nothing_staged(tmp_path, demo_assets):
    from curation.clip_processing import thumb_path

    out = tmp_path / "run"
    blocked = out / thumb_path("multi_anim_1")
    blocked.mkdir(parents=True)  # a folder where the second clip's thumbnail goes: that write fails
    pipelines = tiny_pipelines_file(tmp_path, [demo_assets["multi_anim"]["path"]])
    cmd = CLI + ["--pipelines-file", pipelines, "run", "tiny", "--out", str(out), "--workers", "1"]
    first = subprocess.run(cmd, capture_output=True, text=True)
    table = pq.read_table(out / "audit.parquet").to_pandas()
    asset = table[(table.stage == "asset")].iloc[0]
    assert asset.rule == "storage_error", (asset.rule, first.stderr[-2000:])
    staged = [p for p in (out / "staging").rglob("*") if p.is_file()] if (out / "staging").exists() else []
    assert staged == [], staged  # multi_anim's other clips were staged before the failure: removed
    assert first.returncode == 0 and "verified: 0 accepted clips" in first.stdout, first.stdout[-2000:]


def test_a_source_path_that_is_not_there_is_a_one_line_error(tmp_path):
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(f"tiny:\n  source: {{kind: local, path: {tmp_path / 'nowhere'}}}\n")
    proc = subprocess.run(CLI + ["--pipelines-file", str(pipelines), "run", "tiny", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "error: source path" in proc.stderr and "nowhere" in proc.stderr


@pytest.mark.slow
def test_ctrl_c_stops_a_run_with_one_line_and_the_same_command_finishes_it(tmp_path, demo_assets):
    from tests.test_pipeline import journal_rows

    out = tmp_path / "run"
    names = ["rigid_spinner", "static_statue", "blob_shapekeys"]
    pipelines = tiny_pipelines_file(tmp_path, [demo_assets[n]["path"] for n in names])
    cmd = CLI + ["--pipelines-file", pipelines, "run", "tiny", "--out", str(out), "--workers", "1"]
    # SIGINT as in a terminal's foreground job: a shell's background job (a CI runner's) ignores it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, first_done = [], threading.Event()

    def read_stderr():  # the progress bar's "1/3": an event of the driver's loop, not of a clock
        while ch := proc.stderr.read(1):
            seen.append(ch)
            if ch == "[" and f" 1/{len(names)} " in "".join(seen[-40:]):
                first_done.set()
        first_done.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    first_done.wait()
    assert proc.poll() is None, "the run ended before Ctrl-C"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole foreground group
    proc.wait(timeout=300)
    reader.join(timeout=60)
    stderr = "".join(seen)
    assert proc.returncode == 130, stderr[-3000:]
    assert "\ninterrupted; run the same command to resume\n" in stderr, repr(stderr[-1500:])
    assert "Traceback" not in stderr

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "verified: 2 accepted clips" in again.stdout  # rigid_spinner_0, blob_shapekeys_0
    uids = [r["uid"] for r in journal_rows(out, stage="asset")]
    assert sorted(uids) == sorted(names)  # each asset finished once: none lost, none done twice
