"""Run the Blender job for one asset in its own process, with a timeout; never raises for a bad asset.

Each asset gets a fresh interpreter (bpy holds global state and a bad file can crash Blender), so a
crash, hang or corrupt file costs one asset, not the run. The result says which clips were written
and which were skipped and why, or which kind of failure ended the asset:
  unreadable   the importer could not read the file (corrupt, truncated, not a GLB)
  no_geometry  no visible, renderable mesh
  no_animation no animation in the file
  crash        the Blender process died without a result (signal, abort, out of memory)
  timeout      the job ran past its time limit and was killed
  error        an exception in the job on this asset (message and traceback recorded)
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from render.clip_writer import TMP_PREFIX
from render.settings import JobSettings

LOG_TAIL_LINES = 30


@dataclass
class RenderResult:
    asset: str
    uid: str
    clips: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    failure: dict | None = None
    asset_info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    seconds: float = 0.0
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


def uid_from_path(path: str) -> str:
    """A clip-key-safe id from a file name: no dots (webdataset splits keys at the first dot)."""
    stem = os.path.basename(path).split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "-", stem) or "asset"


def render_asset(asset: str, out_dir: str, settings: JobSettings, uid: str | None = None,
                 extra_meta: dict | None = None, timeout_s: float | None = None) -> RenderResult:
    asset = os.path.abspath(asset)
    uid = uid or uid_from_path(asset)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    timeout_s = settings.render.timeout_s if timeout_s is None else timeout_s
    result = RenderResult(asset=asset, uid=uid)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dam-job-") as work:
        req_path, res_path = os.path.join(work, "request.json"), os.path.join(work, "result.json")
        log_path = os.path.join(work, "blender.log")
        with open(req_path, "w") as f:
            json.dump({"asset": asset, "uid": uid, "out_dir": out_dir, "result": res_path,
                       "settings": settings.to_dict(), "extra_meta": extra_meta or {}}, f)
        if not os.path.isfile(asset):
            result.failure = {"kind": "unreadable", "message": f"{asset}: no such file"}
        else:
            result.failure = _run(req_path, log_path, timeout_s)
            result.log_tail = _tail(log_path)
            if result.failure is None:
                _read_result(res_path, result)
    _remove_partial_clips(out_dir, uid)
    result.seconds = time.perf_counter() - started
    return result


def _run(req_path: str, log_path: str, timeout_s: float) -> dict | None:
    cmd = [sys.executable, "-m", "render.blender_job", "--request", req_path]
    with open(log_path, "w") as log:
        # Own session so a timeout kills the whole process group, whatever Blender started.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=_project_root())
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"kind": "timeout", "message": f"killed after {timeout_s:g} s"}
    if rc != 0:
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        return {"kind": "crash", "message": f"Blender process ended with {how}: {_tail(log_path, 3)}"}
    return None


def _read_result(res_path: str, result: RenderResult) -> None:
    try:
        with open(res_path) as f:
            res = json.load(f)
    except (OSError, ValueError) as exc:
        result.failure = {"kind": "crash", "message": f"no result from the Blender job ({exc})"}
        return
    result.failure = res.get("failure") if res["status"] != "ok" else None
    result.clips = res.get("clips", [])
    result.skipped = res.get("skipped", [])
    result.asset_info = res.get("asset", {})
    result.timings = res.get("timings", {})


def _remove_partial_clips(out_dir: str, uid: str) -> None:
    for tmp in glob.glob(os.path.join(out_dir, f"{TMP_PREFIX}{uid}_*")):
        shutil.rmtree(tmp, ignore_errors=True)


def _tail(path: str, n: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).strip()
    except OSError:
        return ""


def _project_root() -> str:
    """The folder holding the `render` package, so `-m render.blender_job` resolves in the child."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
