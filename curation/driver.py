"""The Ray pipeline: assets -> render -> filters -> staged samples -> shards, every decision audited.

Embedded `ray.init()` on one machine, or `--ray-address` / RAY_ADDRESS for a cluster. Every output
goes through one `Store` (`--out`: a folder or an fsspec URL such as `s3://bucket/prefix`): render
tasks read their asset from a path or URL, render into node-local scratch, and write staged samples
and thumbnails to the store; shard writers (Ray actors) assemble shards from the store into the store; the driver
only records decisions, chooses which keys go into which shard and commits the manifest. Render
tasks ask Ray for exactly the pipeline's `ray:` resources, and the number in flight follows the live
cluster (an autoscaler sees the demand). A lost worker is retried, then recorded; a failing asset is
a recorded decision, and so is a task that raised (`curation.task_errors`: a storage error, or a bug
recorded with its traceback). Resumable: finished assets are read back from the audit journal and skipped, and
what a killed run left half written is reconciled, so every accepted clip lands in exactly one shard;
at the end the accepted keys of the audit are checked against the manifest.

Built to keep up with a large cluster: per finished asset the driver appends its rows to the journal,
adds its accepted keys to the planner and, per shard, writes one small manifest entry, all O(1); the
journal is read once when a run starts (into a compact `ResumeState`) and once at the end (for the
table, the report, splits.json and the check). One driver per output (`OutputLock`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time

from tqdm import tqdm

from curation import audit
from curation.audit_report import REPORT_VALUES, write_report
from curation.clip_processing import process_clip
from curation.output_lock import OutputLock
from curation import overrides as overrides_module, sources
from curation.pipeline_config import Pipeline, hash_excluded
from curation.splits import ATTRIBUTION_FIELDS, SPLITS_VALUES, build_splits, write_splits
from curation.task_errors import classify as classify_task_error, is_storage_error
from dataset.shard_writer import STAGING, ShardPlanner, load_manifest, read_tar_samples, stage_sample, \
    staged_key, staged_path, write_shard
from curation.sources import AssetTask
from dataset.storage import TMP_MARK, Store
from render.clip_writer import is_clip_key_of
from render.launcher import render_asset

# Render outcomes that say what the asset is, not that something went wrong: rejections.
NOT_FAULTS = ("no_animation", "no_geometry", "unsupported_format")
PACKS_IN_FLIGHT = 4      # shard writers (each streams one shard at a time; I/O bound)
RESOURCES_EVERY_S = 5.0  # how often the in-flight bound re-reads the live cluster


def _node() -> dict:
    """Where this task runs (recorded in its audit rows)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    return {"node_id": node_id, "host": socket.gethostname()}


def process_asset(task: AssetTask, pipe: Pipeline, out: Store) -> list[dict]:
    """Runs in a worker: everything about one asset, returned as audit rows (never raises for the asset)."""
    started = time.perf_counter()
    rows, timings = [], {}
    extra = {"source": task.source, "license": task.license, "pipeline": pipe.name,
             "config_hash": pipe.config_hash(),
             # CC BY needs the author credited: carried into every clip of the asset
             **{k: task.info[k] for k in ("name", "author", "viewerUrl") if task.info.get(k)}}
    work = tempfile.mkdtemp(prefix=f"dam-{task.uid}-")  # node-local scratch
    clips = accepted = 0
    source = sources.get(task.source)
    fetched = None
    try:
        try:
            path = fetched = source.fetch(task, pipe, work)
        except Exception as exc:  # network, missing object: the asset's decision, not the run's end
            rows.append(audit.row(task.uid, "download", "error", rule="download_failed",
                                  reasons=[f"{type(exc).__name__}: {exc}"]))
            path = None
        timings["download"] = time.perf_counter() - started
        if path is not None:
            job = pipe.job_settings()
            job.render.threads = pipe.ray.cpus_per_task
            if any(o["decision"] == "accept" for o in task.overrides.values()):
                job.gate = {}  # a clip a person accepts is rendered whatever the geometry rules say first
            t = time.perf_counter()
            res = render_asset(path, os.path.join(work, "clips"), job, uid=task.uid, extra_meta=extra,
                               memory_limit_bytes=pipe.ray.memory_bytes())
            timings["render"] = time.perf_counter() - t
            timings.update({f"render.{k}": v for k, v in res.timings.items()})
            if res.failure:
                status = "rejected" if res.failure["kind"] in NOT_FAULTS else "error"
                rows.append(audit.row(task.uid, "render", status, rule=res.failure["kind"],
                                      reasons=[res.failure["message"]]))
            for s in res.skipped:
                rows.append(audit.row(task.uid, "render", "rejected", rule=s["reason"], reasons=[s["detail"]],
                                      animation=s["animation"], animation_index=s["animation_index"]))
            t = time.perf_counter()
            for c in res.clips:
                clips += 1
                try:
                    row, sample = process_clip(c["dir"], pipe.filters, pipe.split.test_fraction,
                                               pipe.dense.min_points, extra, out,
                                               task.overrides.get(c["key"]) or task.overrides.get(task.uid))
                except Exception as exc:  # a clip the filters cannot read: recorded, others go on
                    if is_storage_error(exc):  # the store or the scratch disk, not the clip: the task
                        raise                  # is a transient storage_error, retried as a whole
                    row, sample = audit.row(task.uid, "filter", "error", rule="processing_error",
                                            reasons=[f"{type(exc).__name__}: {exc}"], animation=c["animation"],
                                            animation_index=c["animation_index"], key=c["key"]), None
                if sample is not None:
                    t_stage = time.perf_counter()
                    row["values"]["staged_bytes"] = stage_sample(out, row["label"], row["split"], sample)
                    row["timings"]["staging"] = time.perf_counter() - t_stage
                    accepted += 1
                for k, v in (row.get("timings") or {}).items():
                    timings[f"process.{k}"] = timings.get(f"process.{k}", 0.0) + v
                rows.append(row)
            timings["process"] = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if fetched is not None:
            source.release(task, pipe, fetched)
    timings["total"] = time.perf_counter() - started
    rows.append(asset_row(task.uid, rows, {"clips": clips, "accepted": accepted, "attribution": attribution(task)},
                          timings))
    node = _node()
    return [{**r, **node} for r in rows]


def _strays_of(out: Store, planner: ShardPlanner, uid: str) -> list[str]:
    """The staged samples of `uid` that the planner does not hold: what a task that raised after
    staging some of its clips leaves behind."""
    keys = {p: staged_key(p) for p in out.list(STAGING)}
    return [p for p, key in keys.items() if is_clip_key_of(key, uid) and not planner.knows(key)]


def attribution(task: AssetTask) -> dict:
    """What CC BY asks to credit, as the source knows it (None where it does not: demo, local): in the
    asset row, so splits.json and the dataset card have it without reading a shard."""
    return {"license": task.license, **{k: task.info.get(k) for k in ATTRIBUTION_FIELDS if k != "license"}}


def asset_row(uid: str, rows: list[dict], values: dict | None = None, timings: dict | None = None) -> dict:
    """The marker that an asset is finished: `error` when its download or render failed, with the
    first error as its rule and whether a later run may retry it (every error transient)."""
    errors = [r["rule"] for r in rows if r["status"] == "error" and r["stage"] in ("download", "render")]
    if not errors:
        return audit.row(uid, "asset", "done", values=values, timings=timings)
    return audit.row(uid, "asset", "error", rule=errors[0], timings=timings,
                     values={**(values or {}), "transient": all(e in audit.TRANSIENT for e in errors)})


class ShardWriter:
    """A Ray actor that writes shards (`write_shard`), one at a time, on whichever node it lives."""

    def write(self, store: Store, rel: str, label: str, split: str, keys: list[str]) -> dict:
        return write_shard(store, rel, label, split, keys)


def _remove_stray_temporaries(out: Store) -> int:
    """Temporaries a killed run left under a local output (an object store never has any: every
    object is one PUT). Shards and staging are the planner's to reconcile."""
    if not out.local:
        return 0
    n = 0
    for root, _, files in os.walk(out.root):
        for name in files:
            if TMP_MARK in name:
                os.remove(os.path.join(root, name))
                n += 1
    return n


def tasks_for(pipe: Pipeline, out: Store) -> tuple[list[AssetTask], list[dict]]:
    """The assets to process (the first `source.limit` if set) and the metadata-stage rows of those
    the source rules dropped."""
    tasks, rejected = sources.get(pipe.source.kind).select(pipe, out)
    return tasks[:pipe.source.limit or None], rejected


def task_demand(pipe: Pipeline) -> dict[str, float]:
    """What one render task asks Ray for, in Ray's resource names."""
    demand = {"CPU": float(pipe.ray.cpus_per_task), "GPU": float(pipe.ray.gpus_per_task),
              "memory": float(pipe.ray.memory_bytes()), **pipe.ray.resources_per_task}
    return {k: v for k, v in demand.items() if v > 0}


def task_slots(resources: dict, demand: dict[str, float]) -> int:
    """Render tasks the cluster, as it is now, can run at once."""
    return min((int(resources.get(k, 0) // v) for k, v in demand.items()), default=0)


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """A cluster address of the form [ray://]HOST:PORT must accept a TCP connection within `timeout_s`:
    ray.init would otherwise retry a wrong one for minutes, printing only warnings."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" and the like: Ray resolves them itself, and fails fast
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}. Check the address and port "
                              "(the head's `ray start --head --port`, 6379 by default), that the head is running "
                              "and that this machine may connect to it") from None


def _connect(address: str | None, workers: int) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        _reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as exc:
            hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                    "; a cluster started with `ray start` uses token authentication: run with RAY_AUTH_MODE=token "
                    "and the cluster's token (~/.ray/auth_token, or RAY_AUTH_TOKEN)")
            raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc.__cause__ or exc}{hint}") from exc
    else:  # one machine: a new instance ("local": never one a `ray start` left on this machine)
        # Ray turns token authentication on for a new instance and says so as a warning the user
        # has nothing to do about (setting RAY_AUTH_MODE here would be too late: Ray reads it at import)
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        for attempt in (1, 2):
            try:
                ray.init(address="local", num_cpus=workers or None, include_dashboard=False, log_to_driver=False)
                return
            except Exception as exc:
                # Ray gives a new raylet a fixed 30 s to register, which a loaded machine can miss: once more
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise
                ray.shutdown()
                print("note: Ray's node did not register within 30 s (a busy machine?): starting it again", flush=True)


def run(pipe: Pipeline, out_url: str, ray_address: str | None = None, workers: int = 0,
        overrides: list[str] | None = None, retry_errors: str | None = None,
        allow_config_change: bool = False) -> dict:
    """`retry_errors`: "transient" processes again the assets that ended in a transient error (see
    audit.TRANSIENT), "all" every asset that ended in an error; None counts them as finished.
    `allow_config_change`: resume into an output made with other settings (recorded in run.json)."""
    out = Store(out_url)
    with OutputLock(out) as lock:
        if lock.taken_over:
            print(f"note: took over the lock of a driver that is gone ({describe_holder(lock.taken_over)})", flush=True)
        return _run(pipe, out, lock, ray_address, workers, overrides, retry_errors, allow_config_change)


def describe_holder(holder: dict) -> str:
    from curation.output_lock import describe
    return describe(holder)


def _run(pipe: Pipeline, out: Store, lock: OutputLock, ray_address: str | None, workers: int,
         overrides: list[str] | None, retry_errors: str | None, allow_config_change: bool) -> dict:
    prepared = _prepare(pipe, out, ray_address, workers, overrides, retry_errors, allow_config_change)
    counts = _loop(prepared, pipe, out, lock, ray_address)
    return _finish(prepared, out, counts)


@dataclass
class Prepared:
    """A run ready to submit: what `_prepare` read and decided, for the loop and the finish."""
    log: audit.AuditLog
    planner: ShardPlanner
    run_info: dict
    total: int                # assets selected
    todo: list[AssetTask]     # those not finished, in the source's order
    attempts: dict[str, int]  # uid -> this attempt's number
    timings: dict             # the driver's seconds so far (completed by the loop and the finish)
    started: float = 0.0      # when the loop began


def _prepare(pipe: Pipeline, out: Store, ray_address: str | None, workers: int, overrides: list[str] | None,
             retry_errors: str | None, allow_config_change: bool) -> Prepared:
    """Check the settings and the overrides, connect to Ray, read the journal once, reconcile the shards
    with it, record run.json and the source's metadata rows, and list what is left to do."""
    called = time.perf_counter()
    before = _check_settings(out, pipe, allow_config_change)
    decided = overrides_module.read(out)  # a malformed file stops the run here, before anything is written
    # Ray before anything is written: a run that cannot start leaves the output as it found it
    t = time.perf_counter()
    _connect(ray_address or os.environ.get("RAY_ADDRESS"), workers)
    ray_connect = time.perf_counter() - t
    log = audit.AuditLog(out, pipe.config_hash())
    state = audit.resume_state(log.iter_rows())  # the journal, read once
    if log.torn:
        print(f"warning: {log.torn} torn journal line(s) skipped; their assets are processed again", flush=True)
    finished = state.done(retry_errors)
    stale = _stale(decided, state, finished)
    if stale:
        print(f"{len(stale)} asset(s) processed again for overrides made since they were decided", flush=True)
    finished -= stale
    planner = ShardPlanner(out, pipe.shards.max_samples, pipe.shards.bytes())
    planner.reconcile(state.accepted_keys(finished))
    _remove_stray_temporaries(out)
    run_info = {"pipeline": dataclasses.asdict(pipe), "config_hash": pipe.config_hash(),
                "overrides": list(overrides or []), "retry_errors": retry_errors,
                "config_changes": (before or {}).get("config_changes", [])}
    if before and before.get("config_hash") != pipe.config_hash():
        run_info["config_changes"].append({"from": before.get("config_hash"), "to": pipe.config_hash(),
                                           "changed": _changes(before, pipe), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    out.write("run.json", json.dumps(run_info, indent=1).encode())
    tasks, meta_rows = tasks_for(pipe, out)
    meta_rows = [r for r in meta_rows if r["uid"] not in state.metadata]  # a resume records them once
    if meta_rows:
        log.record(meta_rows)
    todo = [t for t in tasks if t.uid not in finished]
    for t in todo:
        t.overrides = overrides_module.of_asset(decided, t.uid)
    attempts = {t.uid: state.attempts.get(t.uid, 0) + 1 for t in todo}
    return Prepared(log, planner, run_info, len(tasks), todo, attempts,
                    {"ray_connect": ray_connect, "called": called})


def _loop(prep: Prepared, pipe: Pipeline, out: Store, lock: OutputLock, ray_address: str | None) -> dict:
    """Submit the assets (bounded by the live cluster), record each one's rows as it ends, and hand
    full shards to the writers; returns the counts shown on the progress bar."""
    import ray

    log, planner, attempts, driver_timings = prep.log, prep.planner, prep.attempts, prep.timings
    demand = task_demand(pipe)
    remote = ray.remote(process_asset).options(
        num_cpus=pipe.ray.cpus_per_task, num_gpus=pipe.ray.gpus_per_task, memory=pipe.ray.memory_bytes() or None,
        resources=pipe.ray.resources_per_task or None, max_retries=pipe.ray.retries)
    # Packing is I/O: no CPU reserved, so it never waits behind renders. Long-lived writers, not
    # tasks: a zero-CPU task needs a worker beyond the busy ones, which Ray starts for it and stops
    # when it idles (seconds of CPU per shard: measured, a 40k-asset run on 2 cores slowed 3x).
    writer = ray.remote(ShardWriter).options(num_cpus=0, max_restarts=-1, max_task_retries=pipe.ray.retries)
    free_writers = [writer.remote() for _ in range(PACKS_IN_FLIGHT)]
    pipe_ref, out_ref = ray.put(pipe), ray.put(out)
    _warn_if_unschedulable(demand, ray_address or os.environ.get("RAY_ADDRESS"))

    started = prep.started = time.perf_counter()
    # startup: from the call to the first submit (journal, manifest, reconcile, Ray); loop: submitting
    # and collecting; pack_tasks: shard writing (on nodes); pack_commit: manifest entries
    driver_timings.update(startup=started - driver_timings.pop("called"), pack_tasks=0.0, pack_commit=0.0)
    counts = {"accepted": 0, "rejected": 0, "failed": 0}
    bar = tqdm(total=prep.total, initial=prep.total - len(prep.todo), desc=f"{pipe.name}", unit="asset")
    renders: dict = {}
    packs: dict = {}
    queue = list(reversed(prep.todo))
    shard_queue: list = []  # planned shards waiting for a free writer
    prep.todo = []  # the queue holds them now
    bound, checked = 0, -RESOURCES_EVERY_S

    try:
        while True:
            log.flush_if_due()
            if lock.lost:
                raise RuntimeError(f"another driver took over {out.root} (this one missed its heartbeats): stopping")
            shard_queue += planner.next_shards(final=not queue and not renders)
            while shard_queue and free_writers:
                w = free_writers.pop()
                job = shard_queue.pop(0)
                packs[w.write.remote(out_ref, *job)] = (job, w)
            if not (queue or renders or packs or shard_queue):
                break
            if time.perf_counter() - checked >= RESOURCES_EVERY_S:  # the live cluster, not its size at start
                slots = task_slots(ray.cluster_resources(), demand)
                bound = pipe.ray.max_in_flight or max(2 * slots, 2)
                checked = time.perf_counter()
            while queue and len(renders) < bound:
                t = queue.pop()
                renders[remote.remote(t, pipe_ref, out_ref)] = t
            waiting = list(renders) + list(packs)
            ready, rest = ray.wait(waiting, num_returns=1, timeout=RESOURCES_EVERY_S, fetch_local=False)
            if ready and rest:  # everything else already done too: one pass handles them all
                ready += ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=False)[0]
            for ref in ready:
                if ref in packs:
                    job, w = packs.pop(ref)
                    free_writers.append(w)
                    t = time.perf_counter()
                    try:
                        entry = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # storage failing past the retries: stop, resumable
                        raise RuntimeError(f"writing shard {job[0]} to {out.root} failed: {exc}") from exc
                    driver_timings["pack_tasks"] += entry["seconds"]
                    log.flush()  # the journal holds every key of the shard before the manifest lists it
                    planner.commit(entry)
                    driver_timings["pack_commit"] += time.perf_counter() - t
                    continue
                task = renders.pop(ref)
                try:
                    rows = ray.get(ref)
                except Exception as exc:  # its worker or node lost past its retries, or the task raised
                    rule, reasons = classify_task_error(exc)  # worker_lost, storage_error, error, ...
                    failed = audit.row(task.uid, "render", "error", rule=rule, reasons=reasons)
                    rows = [failed, asset_row(task.uid, [failed])]
                    # clips it staged before it failed are no accepted clip of a finished asset
                    out.delete(_strays_of(out, planner, task.uid))
                for r in rows:
                    r["attempt"] = attempts.get(task.uid, 1)
                log.record(rows)
                surplus = []
                for r in rows:
                    if r["stage"] == "filter":
                        counts["accepted" if r["status"] == "accepted" else "rejected"] += 1
                        if r["status"] == "accepted" and not planner.add(r["label"], r["split"], r["key"],
                                                                         r["values"].get("staged_bytes", 0)):
                            surplus.append(staged_path(r["label"], r["split"], r["key"]))
                    elif r["stage"] == "render" and r["status"] == "rejected":
                        counts["rejected"] += 1
                    elif r["status"] == "error" and r["stage"] != "asset":
                        counts["failed"] += 1
                out.delete(surplus)  # a clip already in a shard, made again: its new staged copy goes
                bar.update(1)
                bar.set_postfix(counts, refresh=False)
    finally:  # on Ctrl-C or an error too: the bar is drawn for the last time before its message
        bar.close()
    driver_timings["loop"] = time.perf_counter() - started
    return counts


def _finish(prep: Prepared, out: Store, counts: dict) -> dict:
    """Close the journal, pack what is left, take out the clips a person rejected after they were
    packed, and write the audit table, the report, the splits and run.json; then check the outputs."""
    log, planner, run_info, driver_timings = prep.log, prep.planner, prep.run_info, prep.timings
    log.close()
    planner.consolidate()
    t = time.perf_counter()
    # the final rows, slimmed to what the report, summary, splits and check read; the table streams the journal
    final = audit.scan(log.iter_rows(), keep_values=REPORT_VALUES | SPLITS_VALUES)
    # clips packed before a person rejected them leave their shards (also after a kill in between)
    done = {r["uid"] for r in final.rows if r["stage"] == "asset"}
    accepted = {r["key"] for r in final.rows if r["stage"] == "filter" and r["status"] == "accepted" and r["uid"] in done}
    rewritten = planner.remove(planner.packed - accepted)
    if rewritten:
        print(f"{len(rewritten)} shard(s) written again without the clips rejected since they were packed", flush=True)
    table = log.write_parquet(final)
    rows = final.rows
    del final
    report = write_report(out, rows)
    splits = write_splits(out, build_splits(rows, run_info))
    driver_timings["audit_and_report"] = time.perf_counter() - t
    driver_timings["wall"] = time.perf_counter() - prep.started
    out.write("run.json", json.dumps({**run_info, "driver_timings": driver_timings}, indent=1).encode())
    check = check_outputs(out, rows=rows)
    return {"counts": counts, "manifest": planner.url, "audit": table, "out": out.root, "report": report,
            "splits": splits,
            "shards": [out.url(s["path"]) for s in planner.manifest["shards"]], "check": check,
            "summary": audit.summary(rows)}


def _stale(decided: dict, state: audit.ResumeState, finished: set[str]) -> set[str]:
    """Finished assets whose clips' recorded overrides differ from the ones in force now: made,
    changed or removed since the asset was decided. They are processed again."""
    stale = set()
    for uid in finished:
        clips = state.clips.get(uid)
        if not clips:
            continue
        want = {}
        for key in clips:
            o = overrides_module.for_clip(decided, uid, key)
            want[key] = (o.key, o.at) if o else None
        if want != clips:
            stale.add(uid)
    return stale


def _check_settings(out: Store, pipe: Pipeline, allow: bool) -> dict | None:
    """The output's run.json (None for a new output). Resuming into an output made with other
    settings would mix two datasets in one: refused, naming what changed, unless `allow`. What
    `config_hash` leaves out (where tasks run, where assets are read from, how many are taken, shard
    sizes) may change."""
    if not out.exists("run.json"):
        return None
    before = json.loads(out.read("run.json"))
    if before.get("config_hash") == pipe.config_hash() or allow:
        return before
    if not _changes(before, pipe):  # same settings, hashed by an earlier version of this code
        before["config_hash"] = pipe.config_hash()
        return before
    raise ValueError(f"{out.root} holds a run made with other settings (config {before.get('config_hash')}, "
                     f"now {pipe.config_hash()}): {'; '.join(_changes(before, pipe)) or 'see run.json'}. Use a new "
                     "--out, the same settings to resume, or --allow-config-change to go on with the new ones "
                     "(clips made before keep their settings; run.json records the change)")


def _changes(before: dict, pipe: Pipeline) -> list[str]:
    old, new = _flat(before.get("pipeline", {})), _flat(dataclasses.asdict(pipe))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and not hash_excluded(k, pipe.source.kind)]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _warn_if_unschedulable(demand: dict[str, float], address: str | None) -> None:
    """An embedded Ray that can never run a task is an error now, not a run that waits forever; a
    cluster may still grow (autoscaler), so there it is a warning."""
    import ray

    if task_slots(ray.cluster_resources(), demand):
        return
    need = ", ".join(f"{k} {v:g}" for k, v in demand.items())
    have = ", ".join(f"{k} {v:g}" for k, v in sorted(ray.cluster_resources().items())
                     if k in demand)
    msg = f"no node can run a render task now (one task needs {need}; the cluster has {have or 'none of it'})"
    if not address:
        raise ValueError(msg + ": set the pipeline's ray.* settings for this machine, e.g. "
                               "--set ray.gpus_per_task=0 --set render.device=CPU")
    print(f"warning: {msg}; tasks wait for nodes that can (an autoscaler adds them)", flush=True)


def check_outputs(out: Store, verify_bytes: bool = False, rows: list[dict] | None = None) -> dict:
    """What a finished output must hold: the audit's accepted keys equal the manifest's keys, each
    key in one shard, every listed shard present with its size (and, with `verify_bytes`, its sha256
    and the keys inside it), nothing left in staging. Returns {"ok": bool, "problems": [...], ...}."""
    problems = []
    rows = audit.AuditLog(out).rows() if rows is None else rows
    finished = {r["uid"] for r in rows if r["stage"] == "asset"}
    accepted = {r["key"] for r in rows if r["stage"] == "filter" and r["status"] == "accepted" and r["uid"] in finished}
    manifest = load_manifest(out)
    listed: dict[str, str] = {}
    for s in manifest["shards"]:
        for k in s["keys"]:
            if k in listed:
                problems.append(f"key {k} is in two shards: {listed[k]} and {s['path']}")
            listed[k] = s["path"]
        if not out.exists(s["path"]):
            problems.append(f"shard {s['path']} is listed in the manifest but missing")
            continue
        if verify_bytes:
            data = out.read(s["path"])
            if len(data) != s["bytes"] or hashlib.sha256(data).hexdigest() != s["sha256"]:
                problems.append(f"shard {s['path']}: size or sha256 differs from the manifest")
            elif [x["__key__"] for x in read_tar_samples(data)] != s["keys"]:
                problems.append(f"shard {s['path']}: keys inside differ from the manifest")
        elif out.size(s["path"]) != s["bytes"]:
            problems.append(f"shard {s['path']}: size differs from the manifest")
    lost, extra = sorted(accepted - set(listed)), sorted(set(listed) - accepted)
    if lost:
        problems.append(f"{len(lost)} accepted clips are in no shard: {', '.join(lost[:10])}")
    if extra:
        problems.append(f"{len(extra)} clips in the shards are not accepted in the audit: {', '.join(extra[:10])}")
    staged = out.list(STAGING)
    if staged:
        problems.append(f"{len(staged)} samples left in {STAGING}/: {', '.join(staged[:5])}")
    return {"ok": not problems, "problems": problems, "accepted": len(accepted), "shards": len(manifest["shards"]),
            "samples": len(listed)}
