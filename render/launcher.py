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
Clips are committed whole, one by one: after a crash, timeout or error the complete ones stay and are listed
in `clips`, the one in progress is removed.
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

import numpy as np

from render.clip_writer import TMP_PREFIX
from render.core_lease import CoreLease
from render.orphan_guard import LAUNCHER_PID_ENV
from render.settings import JobSettings

LOG_TAIL_LINES = 30
POLL_S = 0.5


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
    """A clip-key-safe id from a file name: letters, digits, '_' and '-' only (webdataset splits keys
    at the first dot). A name that had to change (other characters, inner dots) gets 8 hex digits of
    the name's sha256, so `猫.glb` and `狗.glb`, or `a.b.glb` and `a.c.glb`, stay two assets."""
    import hashlib

    name = os.path.basename(path.rstrip("/"))
    stem = name[: -len(ext)] if (ext := os.path.splitext(name)[1]).lower() in (".glb", ".gltf", ".obj") else name
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", stem)
    if safe == stem and stem:
        return stem
    return f"{safe.strip('-') or 'asset'}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"


def render_asset(asset: str, out_dir: str, settings: JobSettings, uid: str | None = None,
                 extra_meta: dict | None = None, timeout_s: float | None = None,
                 on_progress=None) -> RenderResult:
    """Render every animation of `asset` into `out_dir/<uid>_<index>/`. `on_progress(dict)` is
    called while the job runs with its latest progress (animation, clip i of n, frame t of T, and
    the job's pid)."""
    asset = os.path.abspath(asset)
    uid = uid or uid_from_path(asset)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    timeout_s = settings.render.timeout_s if timeout_s is None else timeout_s
    result = RenderResult(asset=asset, uid=uid)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dam-job-") as work:
        req_path, res_path = os.path.join(work, "request.json"), os.path.join(work, "result.json")
        log_path, progress_path = os.path.join(work, "blender.log"), os.path.join(work, "progress.json")
        with open(req_path, "w") as f:
            json.dump({"asset": asset, "uid": uid, "out_dir": out_dir, "result": res_path,
                       "progress": progress_path, "settings": settings.to_dict(),
                       "extra_meta": extra_meta or {}}, f)
        if not os.path.isfile(asset):
            result.failure = {"kind": "unreadable", "message": f"{asset}: no such file"}
        else:
            with CoreLease(settings.render.threads) as cores:
                result.failure = _run(req_path, log_path, timeout_s, progress_path, on_progress, out_dir,
                                      uid, {**_job_env(settings), **cores.env()})
            result.log_tail = _tail(log_path)
            if result.failure is None:
                _read_result(res_path, result)
            if result.failure is not None:  # killed, died or failed: its complete clips stay, reported
                result.clips = result.clips or _last_progress(progress_path).get("done", [])
    result.seconds = time.perf_counter() - started
    return result


def _job_env(settings: JobSettings) -> dict:
    """The job's environment. With a fixed thread count, OpenImageDenoise is held to it too: by
    default it takes every core, and two jobs side by side then each ran 1.8x slower."""
    env = dict(os.environ)
    env[LAUNCHER_PID_ENV] = str(os.getpid())
    if settings.render.threads > 0:
        env["OIDN_NUM_THREADS"] = str(settings.render.threads)
    return env


def replay_clip(asset: str, clip_meta: dict, cameras: dict, positions: np.ndarray, out_dir: str,
                threads: int = 0, timeout_s: float = 3600.0) -> tuple[str | None, dict | None]:
    """Render `positions` (T x V x 3, normalised like the clip's `verts.npy`) of a clip of `asset` with
    the clip's cameras, light and render settings into `out_dir/<key>/frame<tt>.png`. Returns
    (that folder, None) or (None, the failure)."""
    settings = JobSettings()
    used = clip_meta["render"]
    for name in ("engine", "samples", "denoise", "denoise_prefilter", "resolution", "fov_deg",
                 "elevation_deg", "volume_size"):
        if name in used:
            setattr(settings.render, name, used[name])
    settings.render.threads = threads
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dam-replay-") as work:
        req_path, res_path = os.path.join(work, "request.json"), os.path.join(work, "result.json")
        np.save(os.path.join(work, "positions.npy"), np.asarray(positions, dtype=np.float32))
        with open(req_path, "w") as f:
            json.dump({"asset": os.path.abspath(asset), "meta": clip_meta, "cameras": cameras, "out_dir": out_dir,
                       "positions": os.path.join(work, "positions.npy"), "result": res_path,
                       "settings": settings.to_dict()}, f)
        with CoreLease(threads) as cores:
            failure = _run(req_path, os.path.join(work, "blender.log"), timeout_s, os.path.join(work, "p.json"),
                           None, out_dir, clip_meta["uid"], {**_job_env(settings), **cores.env()},
                           module="render.replay_job")
        if failure is None:
            with open(res_path) as f:
                res = json.load(f)
            if res["status"] == "ok":
                return res["dir"], None
            failure = res["failure"]
        return None, failure


def _run(req_path: str, log_path: str, timeout_s: float, progress_path: str, on_progress,
         out_dir: str, uid: str, env: dict, module: str = "render.blender_job") -> dict | None:
    """The failure, or None. Polls so progress can be reported while it waits; however it ends,
    the job is dead and its temporary clip folders are gone when this returns or raises."""
    cmd = [sys.executable, "-m", module, "--request", req_path]
    deadline = time.monotonic() + timeout_s
    last = None
    with open(log_path, "w") as log:
        # Own session so a timeout kills the whole process group, whatever Blender started.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=_project_root(), env=env)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        _kill(proc)
                        return {"kind": "timeout", "message": f"killed after {timeout_s:g} s"}
                if on_progress is not None:
                    last = _report(progress_path, last, on_progress, proc.pid)
        except BaseException:  # the caller is interrupted: the job must not outlive it
            _kill(proc)
            raise
        finally:
            _remove_partial_clips(out_dir, uid, proc.pid)
    if rc != 0:
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        return {"kind": "crash", "message": f"Blender process ended with {how}: {_tail(log_path, 3)}"}
    return None


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    proc.wait()


def _last_progress(progress_path: str) -> dict:
    try:
        with open(progress_path) as f:
            return json.load(f)
    except (OSError, ValueError):  # not written yet
        return {}


def _report(progress_path: str, last, on_progress, pid: int):
    now = _last_progress(progress_path) or last
    if now != last:
        on_progress({**now, "pid": pid})
    return now


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


def _remove_partial_clips(out_dir: str, uid: str, pid: int) -> None:
    """This job's temporary clip folders only: other jobs may be writing into the same folder."""
    for tmp in glob.glob(os.path.join(out_dir, f"{TMP_PREFIX}{glob.escape(uid)}_*-{pid}")):
        if re.fullmatch(rf"{re.escape(TMP_PREFIX + uid)}_\d+-{pid}", os.path.basename(tmp)):
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
