"""The Ray pipeline: assets -> render -> filters -> staged samples -> shards, every decision audited.

Embedded `ray.init()` on one machine, or `--ray-address` / RAY_ADDRESS for a cluster, where render
tasks take a GPU each if the cluster has GPUs. Work in flight is bounded (driver memory does not
grow with the queue); a lost worker is retried, then recorded; a failing asset is a recorded
decision. Resumable: finished assets are read back from the audit journal and skipped, and the shard
packer reconciles what a killed run left half written, so every accepted clip lands in the shards
exactly once.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from curation import audit
from curation.audit_report import write_report
from curation.clip_processing import process_clip
from curation.pipeline_config import Pipeline
from dataset.shard_writer import ShardPacker, atomic_write, stage_sample
from render.launcher import render_asset, uid_from_path


@dataclass
class AssetTask:
    uid: str
    source: str
    path: str | None = None         # local file; None: fetched inside the worker (objaverse)
    license: str | None = None
    info: dict = field(default_factory=dict)


def process_asset(task: AssetTask, pipe: Pipeline, out_dir: str, threads: int, gpu: bool) -> list[dict]:
    """Runs in a worker: everything about one asset, returned as audit rows (never raises for the asset)."""
    started = time.perf_counter()
    rows, timings = [], {}
    extra = {"source": task.source, "license": task.license, "pipeline": pipe.name,
             "config_hash": pipe.config_hash(),
             # CC BY needs the author credited: carried into every clip of the asset
             **{k: task.info[k] for k in ("name", "author", "viewerUrl") if task.info.get(k)}}
    path = task.path
    if path is None:
        try:
            from curation.objaverse_source import fetch
            path = fetch(task.uid)
        except Exception as exc:  # network, missing object: the asset's decision, not the run's end
            rows.append(audit.row(task.uid, "download", "error", rule="download_failed", reasons=[str(exc)]))
        timings["download"] = time.perf_counter() - started
    clips = accepted = 0
    if path is not None:
        job = pipe.job_settings()
        job.render.threads = threads
        job.render.device = "GPU" if gpu else "CPU"
        work = tempfile.mkdtemp(prefix=f"dam-{task.uid}-")
        try:
            t = time.perf_counter()
            res = render_asset(path, work, job, uid=task.uid, extra_meta=extra)
            timings["render"] = time.perf_counter() - t
            timings.update({f"render.{k}": v for k, v in res.timings.items()})
            if res.failure:
                rows.append(audit.row(task.uid, "render", "error", rule=res.failure["kind"],
                                      reasons=[res.failure["message"]]))
            for s in res.skipped:
                rows.append(audit.row(task.uid, "render", "rejected", rule=s["reason"], reasons=[s["detail"]],
                                      animation=s["animation"], animation_index=s["animation_index"]))
            t = time.perf_counter()
            for c in res.clips:
                clips += 1
                try:
                    row, sample = process_clip(c["dir"], pipe.filters, pipe.split.test_fraction,
                                               pipe.dense.min_points, extra, os.path.join(out_dir, "thumbs"))
                except Exception as exc:  # a clip the filters cannot read: recorded, others go on
                    row, sample = audit.row(task.uid, "filter", "error", rule="processing_error",
                                            reasons=[f"{type(exc).__name__}: {exc}"], animation=c["animation"],
                                            animation_index=c["animation_index"], key=c["key"]), None
                if sample is not None:
                    t_stage = time.perf_counter()
                    stage_sample(out_dir, row["label"], row["split"], sample)
                    row["timings"]["staging"] = time.perf_counter() - t_stage
                    accepted += 1
                for k, v in (row.get("timings") or {}).items():
                    timings[f"process.{k}"] = timings.get(f"process.{k}", 0.0) + v
                rows.append(row)
            timings["process"] = time.perf_counter() - t
        finally:
            shutil.rmtree(work, ignore_errors=True)
    timings["total"] = time.perf_counter() - started
    failed = any(r["status"] == "error" and r["stage"] in ("download", "render") for r in rows)
    rows.append(audit.row(task.uid, "asset", "error" if failed else "done",
                          values={"clips": clips, "accepted": accepted}, timings=timings))
    return rows


def _write_run_config(pipe: Pipeline, out_dir: str) -> None:
    """The resolved settings beside the outputs (the report draws thresholds from them)."""
    os.makedirs(out_dir, exist_ok=True)
    atomic_write(os.path.join(out_dir, "run.json"), json.dumps(
        {"pipeline": dataclasses.asdict(pipe), "config_hash": pipe.config_hash()}, indent=1).encode())


def _remove_stray_temporaries(out_dir: str) -> int:
    """Temporaries a killed run left beside run.json, the manifest, the audit table and thumbnails
    (shards and staging are the packer's to reconcile)."""
    n = 0
    for d in (out_dir, os.path.join(out_dir, "thumbs")):
        if os.path.isdir(d):
            for name in os.listdir(d):
                if ".tmp-" in name and os.path.isfile(os.path.join(d, name)):
                    os.remove(os.path.join(d, name))
                    n += 1
    return n


def _record_driver_timings(out_dir: str, timings: dict) -> None:
    """The driver's own time (packing shards, writing the audit table and report) in run.json."""
    path = os.path.join(out_dir, "run.json")
    with open(path) as f:
        run_json = json.load(f)
    run_json["driver_timings"] = timings
    atomic_write(path, json.dumps(run_json, indent=1).encode())


def tasks_for(pipe: Pipeline, out_dir: str) -> tuple[list[AssetTask], list[dict]]:
    """The assets to process and the metadata-stage rows of those the source rules dropped."""
    if pipe.source.kind == "objaverse":
        from curation.objaverse_source import select
        sel = select(pipe.source.objaverse)
        tasks = [AssetTask(uid, "objaverse", license=sel.info.get(uid, {}).get("license"),
                           info=sel.info.get(uid, {})) for uid in sel.uids]
        return tasks, sel.rejected
    from curation.sources import assets_for
    return [AssetTask(uid_from_path(p), pipe.source.kind, path=p) for p in assets_for(pipe, out_dir)], []


def run(pipe: Pipeline, out_dir: str, ray_address: str | None = None, workers: int = 0) -> dict:
    import ray

    out_dir = os.path.abspath(out_dir)
    log = audit.AuditLog(out_dir, pipe.config_hash())
    packer = ShardPacker(out_dir, pipe.shards.max_samples)
    packer.reconcile()
    _remove_stray_temporaries(out_dir)
    _write_run_config(pipe, out_dir)
    tasks, meta_rows = tasks_for(pipe, out_dir)
    if meta_rows:
        log.record(meta_rows)
    finished = log.finished_uids()
    todo = [t for t in tasks if t.uid not in finished]

    address = ray_address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or None, include_dashboard=False, log_to_driver=False)
    resources = ray.cluster_resources()
    gpu = resources.get("GPU", 0) > 0
    cpus = pipe.ray.cpus_per_task
    slots = max(1, int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 1)) // cpus)
    max_in_flight = pipe.ray.max_in_flight or 2 * slots
    remote = ray.remote(process_asset).options(num_cpus=cpus, num_gpus=1 if gpu else 0,
                                               max_retries=pipe.ray.retries)
    pipe_ref = ray.put(pipe)

    started = time.perf_counter()
    driver_timings = {"pack": 0.0}
    counts = {"accepted": 0, "rejected": 0, "failed": 0}
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=f"{pipe.name}", unit="asset")
    pending: dict = {}
    queue = list(todo)
    while queue or pending:
        while queue and len(pending) < max_in_flight:
            t = queue.pop(0)
            pending[remote.remote(t, pipe_ref, out_dir, cpus, gpu)] = t
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            task = pending.pop(ref)
            try:
                rows = ray.get(ref)
            except Exception as exc:  # the worker was lost past its retries
                rows = [audit.row(task.uid, "render", "error", rule="worker_lost", reasons=[str(exc)[-500:]]),
                        audit.row(task.uid, "asset", "error")]
            log.record(rows)
            for r in rows:
                if r["stage"] == "filter":
                    counts["accepted" if r["status"] == "accepted" else "rejected"] += 1
                elif r["stage"] == "render" and r["status"] == "rejected":
                    counts["rejected"] += 1
                elif r["status"] == "error" and r["stage"] != "asset":
                    counts["failed"] += 1
            t = time.perf_counter()
            packer.pack()
            driver_timings["pack"] += time.perf_counter() - t
            bar.update(1)
            bar.set_postfix(counts)
    bar.close()
    t = time.perf_counter()
    packer.pack(final=True)
    driver_timings["pack"] += time.perf_counter() - t
    t = time.perf_counter()
    table = log.write_parquet()
    report = write_report(out_dir)
    driver_timings["audit_and_report"] = time.perf_counter() - t
    driver_timings["wall"] = time.perf_counter() - started
    _record_driver_timings(out_dir, driver_timings)
    return {"counts": counts, "manifest": packer.path, "audit": table, "out_dir": out_dir,
            "report": report, "shards": [s["path"] for s in packer.manifest["shards"]]}
