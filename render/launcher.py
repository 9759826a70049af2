"""Run the Blender job for one asset in its own process, with a timeout; never raises for a bad asset.

Each asset gets a fresh interpreter (bpy holds global state and a bad file can crash Blender), so a
crash, hang or corrupt file costs one asset, not the run. The result says which clips were written
and which were skipped and why, or which kind of failure ended the asset:
  unreadable   the importer could not read the file (corrupt, truncated, not what its extension says)
  unsupported_format no importer for the file's format (render/formats.py: COLLADA, Alembic, ...)
  no_geometry  no visible, renderable mesh
  no_animation no animation in the file
  crash        the Blender process died without a result (signal, abort, out of memory)
  timeout      the job ran past its time limit and was killed
  out_of_memory the job went past its memory limit (`memory_limit_bytes`) and was killed, or an
               allocation failed at its data-size cap (message: the limit and the measured peak)
  error        an exception in the job on this asset (message and traceback recorded)
Clips are committed whole, one by one: after a crash, timeout or error the complete ones stay and are listed
in `clips`, the one in progress is removed.

Memory limit: the rule is a watchdog in the poll loop (every 0.1 s) on the resident memory of the job's
process tree (sum of VmRSS, or a process's VmHWM peak, so a spike between polls still counts); past the
limit the group is killed, its neighbours untouched. Not RLIMIT_AS: a 48 px job resident at 0.65 GB maps
2.0-3.0 GB, more with more threads (GPU drivers map far more). A CPU job also gets RLIMIT_DATA at 2x the
limit + 1 GiB (its data size measured at most resident + 0.45 GB) as a backstop: one huge allocation then
fails at once instead of being faulted in between polls, and that failure is reported as out_of_memory too.
"""
from __future__ import annotations

import glob
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from render.clip_writer import TMP_PREFIX
from render.formats import ASSET_FILES
from render.core_lease import CoreLease
from render.orphan_guard import LAUNCHER_PID_ENV
from render.settings import JobSettings

LOG_TAIL_LINES = 30
POLL_S = 0.5
MEMORY_POLL_S = 0.1  # with a memory limit: how often the job's resident memory is read
GIB = 1 << 30
# Signs in a job's log or failure that an allocation failed (Python, C++, Blender's allocator, Cycles).
_ALLOC_FAILED = re.compile(r"MemoryError|std::bad_alloc|Malloc returns null|out of memory|Cannot allocate memory",
                           re.IGNORECASE)


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
    """A clip-key-safe, readable id from a file name: letters (any script), digits, '_' and '-'
    (webdataset splits keys at the first dot, and a key is a file name on every store). A name that
    had to change (other characters, inner dots) gets 8 hex digits of the name's sha256, so `a.b.glb`
    and `a.c.glb`, or `a b.glb` and `a-b.glb`, stay two assets; `猫.glb` stays `猫`."""
    import hashlib

    name = os.path.basename(path.rstrip("/"))
    stem = name[: -len(ext)] if (ext := os.path.splitext(name)[1]).lower() in ASSET_FILES else name
    safe = re.sub(r"[^\w-]", "-", stem)  # \w: Unicode letters and digits, and '_'
    if safe == stem and stem:
        return stem
    return f"{safe.strip('-') or 'asset'}-{hashlib.sha256(stem.encode()).hexdigest()[:8]}"


def render_asset(asset: str, out_dir: str, settings: JobSettings, uid: str | None = None,
                 extra_meta: dict | None = None, timeout_s: float | None = None,
                 on_progress=None, memory_limit_bytes: int = 0) -> RenderResult:
    """Render every animation of `asset` into `out_dir/<uid>_<index>/`. `on_progress(dict)` is
    called while the job runs with its latest progress (animation, clip i of n, frame t of T, and
    the job's pid). `memory_limit_bytes` (0: none) caps the job's resident memory: past it the job
    is killed and fails with kind out_of_memory."""
    asset = os.path.abspath(asset)
    uid = uid or uid_from_path(asset)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    timeout_s = settings.render.timeout_s if timeout_s is None else timeout_s
    watch = MemoryWatch(memory_limit_bytes, backstop=settings.render.device == "CPU")
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
                                      uid, {**_job_env(settings), **cores.env()}, watch=watch)
            result.log_tail = _tail(log_path)
            if result.failure is None:
                _read_result(res_path, result)
            result.failure = watch.explain(result.failure, log_path)
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
                threads: int = 0, timeout_s: float = 3600.0,
                memory_limit_bytes: int = 0) -> tuple[str | None, dict | None]:
    """Render `positions` (T x V x 3, normalised like the clip's `verts.npy`) of a clip of `asset` with
    the clip's cameras, light and render settings into `out_dir/<key>/frame<tt>.png`. Returns
    (that folder, None) or (None, the failure). `memory_limit_bytes` as for `render_asset`."""
    settings = JobSettings()
    used = clip_meta["render"]
    for name in ("engine", "samples", "denoise", "denoise_prefilter", "resolution", "fov_deg",
                 "elevation_deg", "volume_size"):
        if name in used:
            setattr(settings.render, name, used[name])
    settings.render.threads = threads
    watch = MemoryWatch(memory_limit_bytes, backstop=settings.render.device == "CPU")
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dam-replay-") as work:
        req_path, res_path = os.path.join(work, "request.json"), os.path.join(work, "result.json")
        np.save(os.path.join(work, "positions.npy"), np.asarray(positions, dtype=np.float32))
        with open(req_path, "w") as f:
            json.dump({"asset": os.path.abspath(asset), "meta": clip_meta, "cameras": cameras, "out_dir": out_dir,
                       "positions": os.path.join(work, "positions.npy"), "result": res_path,
                       "settings": settings.to_dict()}, f)
        log_path = os.path.join(work, "blender.log")
        with CoreLease(threads) as cores:
            failure = _run(req_path, log_path, timeout_s, os.path.join(work, "p.json"),
                           None, out_dir, clip_meta["uid"], {**_job_env(settings), **cores.env()},
                           module="render.replay_job", watch=watch)
        if failure is None:
            with open(res_path) as f:
                res = json.load(f)
            if res["status"] == "ok":
                return res["dir"], None
            failure = res["failure"]
        return None, watch.explain(failure, log_path)


def export_animation(glb: str, out: str, fps: float, frames: int, timeout_s: float = 3600.0
                     ) -> dict | None:
    """Convert the morph-target animation of `glb` (frames 0..frames-1 at `fps`) to `out`, FBX or
    Alembic by its extension, with Blender's exporters (`render.export_job`). Returns None, or the
    failure (kind and message)."""
    fmt = os.path.splitext(out)[1].lower().lstrip(".")
    if fmt not in ("fbx", "abc"):
        raise ValueError(f"{out}: an animation is exported as .fbx or .abc")
    with tempfile.TemporaryDirectory(prefix="dam-export-") as work:
        req_path, res_path = os.path.join(work, "request.json"), os.path.join(work, "result.json")
        with open(req_path, "w") as f:
            json.dump({"glb": os.path.abspath(glb), "out": os.path.abspath(out), "format": fmt, "fps": fps,
                       "frames": frames, "result": res_path}, f)
        log_path = os.path.join(work, "blender.log")
        failure = _run(req_path, log_path, timeout_s, os.path.join(work, "p.json"), None, work, "export",
                       dict(os.environ), module="render.export_job")
        if failure is None:
            with open(res_path) as f:
                res = json.load(f)
            failure = None if res["status"] == "ok" else res["failure"]
        return failure


class MemoryWatch:
    """A job's memory limit: the peak measured so far, and the data-size backstop (see the module doc)."""

    def __init__(self, limit_bytes: int = 0, backstop: bool = True):
        if limit_bytes < 0:
            raise ValueError(f"memory_limit_bytes must be >= 0 (0: no limit), got {limit_bytes}")
        self.limit = int(limit_bytes)
        self.peak = 0
        # RLIMIT_DATA: CPU jobs only (a GPU driver's mappings were not measured), Linux only (prlimit).
        self.data_cap = (2 * self.limit + GIB) if self.limit and backstop and hasattr(resource, "prlimit") else 0

    def start(self, pid: int) -> None:
        """Arm the backstop on the just-started job (before it has allocated anything of note)."""
        if self.data_cap:
            try:
                resource.prlimit(pid, resource.RLIMIT_DATA, (self.data_cap, self.data_cap))
            except (ProcessLookupError, PermissionError):  # already gone: nothing to cap
                pass

    def over(self, pid: int) -> bool:
        """Measure the job's tree; True when it went past the limit."""
        if not self.limit:
            return False
        self.peak = max(self.peak, _tree_memory(pid))
        return self.peak > self.limit

    def failure(self) -> dict:
        return {"kind": "out_of_memory",
                "message": f"killed past its memory limit of {_mib(self.limit)}: measured peak {_mib(self.peak)} "
                           f"(resident memory of the job's processes)"}

    def explain(self, failure: dict | None, log_path: str) -> dict | None:
        """A crash or error that is an allocation failing under the backstop becomes out_of_memory."""
        if not self.data_cap or failure is None or failure.get("kind") not in ("crash", "error"):
            return failure
        said = " ".join([failure.get("message", ""), failure.get("traceback", ""), _tail(log_path)])
        if not _ALLOC_FAILED.search(said):
            return failure
        first = failure.get("message", "").strip().splitlines()
        return {"kind": "out_of_memory",
                "message": f"an allocation failed at the job's data-size cap of {_mib(self.data_cap)} (memory limit "
                           f"{_mib(self.limit)}): measured peak {_mib(self.peak)} resident; "
                           f"{first[0][:200] if first else failure['kind']}"}


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _tree_pids(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc/<pid>/task/*/children (Linux)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for tasks in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                with open(tasks) as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:  # the thread or process ended meanwhile
                pass
    return found


def _tree_memory(pid: int) -> int:
    """Bytes resident in the job's process tree: the sum of VmRSS now, or the highest VmHWM (one
    process's peak, which a spike between two polls leaves behind), whichever is larger. Never
    above the tree's true peak (peaks of different processes are not added)."""
    total, highest = 0, 0
    for p in _tree_pids(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                fields = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
        except OSError:  # gone
            continue
        total += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
        highest = max(highest, int(fields.get("VmHWM", "0 kB").split()[0]) * 1024)
    return max(total, highest)


def _run(req_path: str, log_path: str, timeout_s: float, progress_path: str, on_progress,
         out_dir: str, uid: str, env: dict, module: str = "render.blender_job",
         watch: MemoryWatch | None = None) -> dict | None:
    """The failure, or None. Polls so progress can be reported (and memory measured) while it waits;
    however it ends, the job is dead and its temporary clip folders are gone when this returns or raises."""
    cmd = [sys.executable, "-m", module, "--request", req_path]
    watch = watch or MemoryWatch()
    poll_s = MEMORY_POLL_S if watch.limit else POLL_S
    deadline = time.monotonic() + timeout_s
    last = None
    with open(log_path, "w") as log:
        # Own session so a timeout kills the whole process group, whatever Blender started.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=_project_root(), env=env)
        try:
            watch.start(proc.pid)
            while True:
                try:
                    rc = proc.wait(timeout=max(0.0, min(poll_s, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if watch.over(proc.pid):
                        _kill(proc)
                        return watch.failure()
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
