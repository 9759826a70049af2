"""The `driveanymesh` command line. Each subcommand imports only the package it drives."""
from __future__ import annotations

import argparse
import os
import signal
import sys


def _cmd_render(args) -> int:
    from curation.pipeline_config import load_pipeline
    from render.launcher import render_asset

    pipe = load_pipeline(args.pipeline, args.pipelines_file)
    job = pipe.job_settings()
    job.gate = {}  # `render` renders every clip; deciding which to keep is `run`'s
    for name in ("resolution", "engine", "samples"):
        if getattr(args, name) is not None:
            setattr(job.render, name, getattr(args, name))
    if args.keyframes is not None:
        job.keyframes.count = args.keyframes
    if args.seed is not None:
        job.seed = args.seed
    job.render.validate()
    job.keyframes.validate()
    from tqdm import tqdm

    name = os.path.basename(args.asset)
    bar = tqdm(total=1, desc=name, bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def show(p: dict) -> None:  # progress as clips done, fractional within the current clip
        bar.total = p["clips"]
        bar.n = p["clip"] - 1 + p["frame"] / p["frames"]
        bar.set_description_str(f"{name} clip {p['clip']}/{p['clips']} {p['animation']!r} "
                                f"frame {p['frame']}/{p['frames']}")

    res = render_asset(args.asset, args.out, job, uid=args.uid, timeout_s=args.timeout, on_progress=show,
                       extra_meta={"source": "local", "pipeline": pipe.name, "config_hash": pipe.config_hash()})
    bar.close()
    for c in res.clips:
        print(f"clip  {c['dir']}  ({c['animation']!r}, {c['keyframes']} keyframes, {c['vertices']} vertices)")
    for s in res.skipped:
        print(f"skip  {res.uid}_{s['animation_index']}  ({s['animation']!r}): {s['reason']}: {s['detail']}")
    if res.failure:
        print(f"fail  {res.asset}: {res.failure['kind']}: {res.failure['message']}", file=sys.stderr)
    print(f"{len(res.clips)} clips, {len(res.skipped)} skipped in {res.seconds:.1f} s -> {os.path.abspath(args.out)}")
    return 1 if res.failure else 0


def _cmd_demo_assets(args) -> int:
    from curation.sources import write_demo_assets, write_procedural_assets

    if args.variants:
        for e in write_procedural_assets(args.out, args.variants, args.seed):
            print(f"{e['path']}  plan={e['plan']}")
        return 0
    for e in write_demo_assets(args.out, args.seed):
        print(f"{e['path']}  expect={e['expect']}")
    return 0


def _cmd_run(args) -> int:
    from curation.driver import run
    from curation.pipeline_config import load_pipeline

    overrides = list(args.set or [])
    if args.limit is not None:
        overrides.append(f"source.limit={args.limit}")
    pipe = load_pipeline(args.pipeline, args.pipelines_file, overrides)
    if args.uids is not None:  # the uid list is the pipeline's source's own setting
        from curation import sources

        setting = sources.get(pipe.source.kind).uids_setting
        if not setting:
            print(f"error: --uids: a {pipe.source.kind} source takes no uid list", file=sys.stderr)
            return 2
        overrides.append(f"source.{setting}={args.uids}")
        pipe = load_pipeline(args.pipeline, args.pipelines_file, overrides)
    out = run(pipe, args.out, ray_address=args.ray_address, workers=args.workers, overrides=overrides,
              retry_errors=args.retry_errors, allow_config_change=args.allow_config_change)
    print(out["summary"])
    print(f"\nshards ({len(out['shards'])}):")
    for s in out["shards"]:
        print(f"  {s}")
    print(f"manifest: {out['manifest']}\nsplits:   {out['splits']}\naudit:    {out['audit']}\n"
          f"report:   {out['report']}")
    return _report_check(out["check"])


def _report_check(check: dict) -> int:
    if check["ok"]:
        print(f"verified: {check['accepted']} accepted clips, each in exactly one of {check['shards']} shards")
        return 0
    for p in check["problems"]:
        print(f"error: {p}", file=sys.stderr)
    print("error: the output does not hold every accepted clip exactly once (run the same command again "
          "to resume and repair it)", file=sys.stderr)
    return 1


def _cmd_verify(args) -> int:
    from curation.driver import check_outputs
    from dataset.storage import Store

    out = Store(args.out)
    if not out.exists("manifest.json"):
        print(f"error: no manifest.json in {out.root}", file=sys.stderr)
        return 2
    return _report_check(check_outputs(out, verify_bytes=True))


def _cmd_audit(args) -> int:
    from curation import audit

    if (args.label or args.split) and args.what != "uids":
        print(f"error: --label and --split go with `audit DIR uids`, not `{args.what}`", file=sys.stderr)
        return 2
    if args.what == "uids":  # splits.json when the run wrote one: no journal read
        from curation.splits import read_splits, select_uids

        for uid in select_uids(read_splits(args.dir), args.label, args.split):
            print(uid)
        return 0
    if args.what == "override":
        return _cmd_override(args)
    if args.what == "card":
        from curation.dataset_card import write_card

        print(f"card: {write_card(args.dir)}")
        return 0
    rows = audit.AuditLog(args.dir).rows()
    if not rows:
        print(f"error: no audit rows in {args.dir}", file=sys.stderr)
        return 2
    if args.what == "summary":
        print(audit.summary(rows))
    elif args.what == "why":
        if not args.uid:
            print("error: audit DIR why needs a UID", file=sys.stderr)
            return 2
        print(audit.why(rows, args.uid))
    elif args.what == "review":
        from curation.audit_report import write_review

        if not args.rule:
            print("error: audit DIR review needs --rule RULE (a filter rule, or `accepted`)", file=sys.stderr)
            return 2
        print(f"review: {write_review(args.dir, args.rule, rows)}")
    elif args.what == "report":
        from curation.audit_report import write_report

        print(f"report: {write_report(args.dir)}")
    return 0


def _cmd_override(args) -> int:
    """`audit DIR override KEY accept|reject --reason TEXT`, or a batch `--from FILE` (JSON lines with
    key, decision, reason and optionally by): checked whole against the run's audit, then appended to
    DIR/overrides.jsonl; the next `run` into DIR honours them."""
    import getpass
    import json

    from curation import audit
    from curation import overrides as ov
    from dataset.storage import Store

    store = Store(args.dir)
    by = args.by or getpass.getuser()
    if args.from_file:
        if args.uid or args.decision:
            print("error: audit DIR override takes KEY DECISION or --from FILE, not both", file=sys.stderr)
            return 2
        with open(args.from_file) as f:
            lines = f.read().splitlines()
        wanted = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if not isinstance(d, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                print(f"error: {args.from_file} line {n}: expected a JSON object with key, decision, reason "
                      f"({exc}); nothing written", file=sys.stderr)
                return 2
            wanted.append((f"{args.from_file} line {n}", d))
    else:
        if not (args.uid and args.decision and args.reason):
            print("error: audit DIR override needs KEY, accept or reject, and --reason TEXT (or --from FILE)",
                  file=sys.stderr)
            return 2
        wanted = [("the command line", {"key": args.uid, "decision": args.decision, "reason": args.reason})]
    # keys are resolved against the run's final rows: a clip key, or a uid with rendered clips
    owner = {}
    for r in audit.AuditLog(store).rows():
        if r["stage"] == "filter" and r.get("key"):
            owner[r["key"]] = owner[r["uid"]] = r["uid"]
    at = ov.now()
    items = []
    for where, d in wanted:
        key = d.get("key")
        if key not in owner:
            print(f"error: {where}: {key!r} is no clip key or uid with clips in the audit of {store.root}; "
                  "nothing written", file=sys.stderr)
            return 2
        try:
            items.append(ov.checked({"by": by, **d, "uid": owner[key], "at": at}, where))
        except ov.OverridesError as exc:
            print(f"error: {exc}; nothing written", file=sys.stderr)
            return 2
    try:
        ov.append(store, items)
    except ov.OverridesError as exc:
        print(f"error: {exc}; fix or remove that line, nothing written", file=sys.stderr)
        return 2
    for o in items:
        print(f"override: {o.key} {o.decision} ({o.reason})")
    print(f"{len(items)} override(s) in {store.url(ov.OVERRIDES)}: the next `run` into {store.root} applies them")
    return 0


def _shard_urls(specs: list[str]) -> list[str]:
    """Shard URLs from the command line: paths, s3:// and other URLs, brace patterns
    (`train-{000000..000009}.tar`), a manifest.json (local or URL, `#train` or `#textured/test` for part of it)."""
    from dataset.shard_list import shard_urls

    return shard_urls(specs)


def _cmd_train(args) -> int:
    from train.config import load_train_config
    from train.trainer import Trainer

    cfg = load_train_config(args.config, args.model, args.set)
    if args.max_steps is not None:
        cfg.max_steps = args.max_steps
    trainer = Trainer(cfg, _shard_urls(args.shards), args.out, _shard_urls(args.val_shards or []) or None,
                      vae_checkpoint=args.vae, resume=args.resume)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return 0


def _cmd_encode_latents(args) -> int:
    import torch

    from train.config import load_train_config
    from train.latent_cache import encode_shards
    from train.checkpoint import load_vae

    device = "cuda" if torch.cuda.is_available() else "cpu"
    vae = load_vae(args.vae, device)
    data = load_train_config(args.config).data if args.config else None
    if data is None:
        from dataset.loaders import LoaderConfig
        data = LoaderConfig(image_size=vae.cfg.image_size)
    paths = encode_shards(vae, _shard_urls(args.shards), args.out, data, device)
    print(f"{len(paths)} latent shards under {os.path.abspath(args.out)}")
    return 0


def _cmd_drive(args) -> int:
    import tempfile

    from train.drive import drive

    fmt = os.path.splitext(args.out)[1].lower()
    if fmt not in (".glb", ".fbx", ".abc"):
        print(f"error: --out {args.out}: write .glb (morph targets), .fbx (shape keys) or .abc (vertex cache)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="dam-drive-") as work:
        glb = args.out if fmt == ".glb" else os.path.join(work, "driven.glb")
        res = drive(args.mesh, args.video, args.vae, args.diffusion, glb, points_out=args.points,
                    frames_dir=args.frames_dir, frames=args.frames, fps=args.fps, delta=args.delta, seed=args.seed,
                    chunk_size=args.chunk)
        if fmt != ".glb":  # Blender's own exporters, from the GLB just written
            from render.launcher import export_animation

            failure = export_animation(glb, args.out, res["fps"], res["frames"])
            if failure:
                print(f"error: exporting {args.out} failed ({failure['kind']}): {failure['message']}", file=sys.stderr)
                return 1
    print(f"{res['frames']} keyframes x {res['vertices']:,} vertices at {res['fps']:g} fps in {res['seconds']:.1f} s"
          f" -> {os.path.abspath(args.out)}" + (f" (points: {os.path.abspath(res['points'])})" if res["points"] else ""))
    if res["frame_files"]:
        print(f"per-frame meshes: {len(res['frame_files'])} x mesh_NN.glb in {os.path.abspath(args.frames_dir)}")
    return 0


def _cmd_eval(args) -> int:
    from train.evaluate import evaluate

    render = None
    if args.assets:
        from render.launcher import replay_clip, uid_from_path

        files = []
        for a in args.assets:  # files, or folders searched recursively
            if os.path.isdir(a):
                files += [os.path.join(root, n) for root, _, names in os.walk(a) for n in names]
            else:
                files.append(a)
        by_uid = {uid_from_path(f): f for f in files if f.lower().endswith((".glb", ".gltf"))}
        renders = os.path.join(args.out, "renders")

        def render(clip, verts, kind):
            uid = clip.meta["uid"]
            if uid not in by_uid:
                print(f"warning: no source asset for {uid} under --assets: not rendered", file=sys.stderr)
                return None
            folder, failure = replay_clip(by_uid[uid], clip.meta, clip.cameras, verts, os.path.join(renders, kind),
                                          threads=args.render_threads)
            if failure:
                print(f"warning: {clip.key}: rendering failed: {failure['message']}", file=sys.stderr)
            return folder

    from dataset.shard_list import sample_count

    res = evaluate(_shard_urls(args.shards), args.vae, args.out, diffusion_checkpoint=args.diffusion,
                   max_clips=args.max_clips, eval_points=args.eval_points, seed=args.seed, render=render,
                   actionbench_points=args.actionbench_points, lpips_backbone=args.lpips_backbone,
                   # similarity: eval.json as before, so earlier evaluations resume
                   actionbench_settings={"alignment": "actionbench"} if args.alignment == "actionbench" else None,
                   ray_address=args.ray_address, workers=args.workers, total_clips=sample_count(args.shards))
    with open(res["table_path"]) as f:
        print(f.read())
    print(f"per clip: {res['csv']}\nActionBench metrics per clip: {res['actionbench_csv']}\n"
          f"contact sheet: {res['contact_sheet']}")
    if res["contact_sheet_frames"]:
        print(f"rendered frames (true | reconstruction | generation): {res['contact_sheet_frames']}")
    return 0


def _cmd_eval_points(args) -> int:
    import csv
    import math

    from train import actionbench as ab

    kw = {k: v for k, v in dict(frames=args.frames, icp_points=args.icp_points, chamfer_points=args.chamfer_points,
                                seed=args.seed, alignment=args.alignment).items() if v is not None}
    names = (("cd_3d", "CD-3D"), ("cd_4d", "CD-4D"), ("cd_m", "CD-M"))

    def line(res: dict) -> str:
        return "  ".join(f"{label} {res[key]:.4f}" for key, label in names)

    control_kw = {k: v for k, v in kw.items() if k != "chamfer_points"}

    def controls(uid: str, gt: str) -> list[dict]:  # the GT's own first frame and time-mean, scored alike
        if args.no_controls:
            return []
        return [{"uid": uid, "kind": kind, **res} for kind, res in ab.score_controls(gt, **control_kw).items()]

    def means(rows: list[dict]) -> dict:
        return {key: float(sum(r[key] for r in rows if not math.isnan(r[key]))
                           / max(1, sum(not math.isnan(r[key]) for r in rows))) for key, _ in names}

    gt_is_clip = args.gt.endswith(".npy") or os.path.isfile(os.path.join(args.gt, "surfaces.npy"))
    if gt_is_clip:
        uid = os.path.basename(os.path.normpath(args.pred))
        rows = [{"uid": uid, "kind": "prediction", **ab.score_clip(args.pred, args.gt, **kw)}]
        print(line(rows[0]))
        control_rows = controls(uid, args.gt)
        for r in control_rows:
            print(f"{ab.CONTROLS[r['kind']]}:  {line(r)}")
    else:
        clips, gt_only, pred_only = ab.find_clips(args.pred, args.gt)
        if not clips:
            raise ValueError(f"no uid in both {args.pred} (<uid>/mesh_*.glb or <uid>/*.npy) and "
                             f"{args.gt} (<uid>/surfaces.npy)")
        if gt_only or pred_only:
            print(f"warning: {len(gt_only)} GT clips without a prediction, {len(pred_only)} predictions "
                  f"without GT: scoring the {len(clips)} in both", file=sys.stderr)
        short = []  # every clip checked before any is scored
        for uid, pred, gt in clips:
            have, truth = ab.clip_frames(pred), ab.clip_frames(gt)
            need = args.frames or truth
            if min(have, truth) < need:
                short.append(f"{uid} ({have} predicted and {truth} GT frames, {need} needed)")
        if short:
            raise ValueError("too few frames: " + ", ".join(short))
        from tqdm import tqdm

        rows, control_rows = [], []
        width = max(len(u) for u, _, _ in clips)
        for uid, pred, gt in tqdm(clips, desc="clips", unit="clip"):
            rows.append({"uid": uid, "kind": "prediction", **ab.score_clip(pred, gt, **kw)})
            control_rows += controls(uid, gt)
            tqdm.write(f"{uid:<{width}}  {line(rows[-1])}")
        unmeasured = sum(math.isnan(r["cd_m"]) for r in rows)
        print(f"mean over {len(rows)} clip{'' if len(rows) == 1 else 's'}:  {line(means(rows))}"
              + (f"  (CD-M over {len(rows) - unmeasured}: not measured on {unmeasured})" if unmeasured else ""))
        for kind, label in ab.CONTROLS.items():
            if control_rows:
                print(f"{label}:  {line(means([r for r in control_rows if r['kind'] == kind]))}")
        print(f"ActionMesh, published (theirs, ActionBench's 128 clips, their ICP):  {line(ab.ACTIONMESH_PUBLISHED)}")
    rows += control_rows
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["uid", "kind", "cd_3d", "cd_4d", "cd_m"])
            w.writeheader()
            w.writerows(rows)
        print(f"per clip: {os.path.abspath(args.out)}")
    return 0


def _pipelines_file(argv) -> str:
    """--pipelines-file as given (help for `run` lists that file's pipelines), before full parsing."""
    from curation.pipeline_config import DEFAULT_FILE

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--pipelines-file", default=DEFAULT_FILE)
    return pre.parse_known_args(argv)[0].pipelines_file


def _wrap(name: str, description: str) -> str:
    import textwrap

    return textwrap.fill(description or "(no description)", width=100, initial_indent=f"  {name:<24}",
                         subsequent_indent=" " * 26)


def main(argv=None) -> int:
    from curation.pipeline_config import DEFAULT_FILE, PipelineConfigError

    ap = argparse.ArgumentParser(prog="driveanymesh", description="Drive Any Mesh: 4D dataset and training stack")
    ap.add_argument("--pipelines-file", default=DEFAULT_FILE, help="pipelines YAML (default: %(default)s)")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render one asset into one clip folder per animation")
    r.add_argument("asset", help="GLB/glTF file")
    r.add_argument("--out", required=True, help="folder for the clip folders")
    r.add_argument("--pipeline", default="demo", help="pipeline whose render settings to use")
    r.add_argument("--resolution", type=int)
    r.add_argument("--keyframes", type=int, help="keyframes per clip (T)")
    r.add_argument("--engine", choices=["cycles", "eevee", "workbench"])
    r.add_argument("--samples", type=int)
    r.add_argument("--seed", type=int)
    r.add_argument("--uid", help="asset id used in clip keys (default: from the file name)")
    r.add_argument("--timeout", type=float, help="seconds before the Blender job is killed")
    r.set_defaults(func=_cmd_render)

    d = sub.add_parser("demo-assets", help="write the built-in demo assets (or, with --variants, the procedural family)")
    d.add_argument("--out", required=True)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--variants", type=int, default=0,
                   help="write N variants of the procedural family (render/procedural_assets.py) instead")
    d.set_defaults(func=_cmd_demo_assets)

    from curation.pipeline_config import descriptions

    try:
        named = descriptions(_pipelines_file(argv))
    except PipelineConfigError as exc:
        named = {}
        print(f"warning: {exc}", file=sys.stderr)
    p = sub.add_parser("run", help="run a named pipeline end to end: shards, manifest, audit",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="pipelines:\n" + "\n".join(_wrap(n, d) for n, d in named.items()))
    p.add_argument("pipeline", help="a pipeline name (listed below)")
    p.add_argument("--out", required=True,
                   help="where every output goes: a folder (default kind), or an fsspec URL such as "
                        "s3://bucket/prefix, gs://bucket/prefix, file:///path (S3 credentials and endpoint "
                        "from the usual AWS settings, e.g. AWS_ENDPOINT_URL). Running the same command "
                        "again resumes.")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one pipeline setting for this run (repeatable), checked like the YAML and "
                        "recorded in run.json, e.g. --set source.path=s3://bucket/assets/ --set render.samples=64")
    p.add_argument("--retry-errors", nargs="?", const="transient", choices=["transient", "all"],
                   help="process again the assets that ended in a transient error (download_failed, "
                        "worker_lost, timeout, out_of_memory, storage_error) instead of counting them as finished; "
                        "'--retry-errors all': every asset that ended in an error. The audit keeps every attempt")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume into an output made with other settings (recorded in run.json); without it "
                        "such a run stops and names what changed")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else embedded)")
    p.add_argument("--workers", type=int, default=0, help="embedded Ray: CPUs to use (default: all)")
    p.add_argument("--limit", type=int, help="only the first N assets of the source, any kind (a cheap trial)")
    p.add_argument("--uids", help="a source that takes a uid list (objaverse): file with the uids to consider, "
                                  "one per line")
    p.set_defaults(func=_cmd_run)

    v = sub.add_parser("verify", help="re-check a finished output: counts, keys, sha256 against the objects")
    v.add_argument("out", help="the run's --out (folder or URL)")
    v.set_defaults(func=_cmd_verify)

    a = sub.add_parser("audit", help="read a run's audit: summary, why UID, an HTML report, the uid lists of its "
                                     "splits, or a dataset card")
    a.add_argument("dir", help="the run's --out (folder or URL)")
    a.add_argument("what", choices=["summary", "why", "report", "uids", "card", "override", "review"],
                   help="summary: counts per rule; why UID: every decision about one asset; report: "
                        "DIR/report/index.html; uids: the accepted uids, one per line (from splits.json); "
                        "card: DIR/DATASET_CARD.md (licences, attribution, settings, how to reproduce the split); "
                        "override KEY accept|reject --reason TEXT: a person's decision over the rules' for a clip "
                        "key or uid, applied by the next run (DIR/overrides.jsonl); review --rule R: "
                        "DIR/report/review-R.html, the clips R decided, each with the override line that reverses it")
    a.add_argument("uid", nargs="?", help="why: the uid; override: a clip key or uid")
    a.add_argument("decision", nargs="?", choices=["accept", "reject"], help="override: the decision")
    a.add_argument("--reason", help="override: why (recorded with the decision)")
    a.add_argument("--rule", help="review: the filter rule whose clips to show (or `accepted`)")
    a.add_argument("--by", help="override: who decides (default: the user name)")
    a.add_argument("--from", dest="from_file", metavar="FILE",
                   help="override: a batch, one JSON object per line with key, decision, reason (and by)")
    a.add_argument("--label", choices=["textured", "textureless"], help="uids: only assets of this label")
    a.add_argument("--split", choices=["train", "test"], help="uids: only assets of this split")
    a.set_defaults(func=_cmd_audit)

    t = sub.add_parser("train", help="train the VAE or the diffusion model on clip shards (torchrun for DDP)")
    t.add_argument("model", choices=["vae", "diffusion"])
    t.add_argument("--config", required=True, help="NAME in training.yaml, FILE:NAME, or a YAML file")
    t.add_argument("--shards", nargs="+", required=True, help="training shards: paths, URLs (s3://...), brace patterns, or a run's manifest.json[#split]")
    t.add_argument("--val-shards", nargs="+", help="held-out shards for validation")
    t.add_argument("--out", required=True, help="folder for checkpoints, TensorBoard logs and config.json")
    t.add_argument("--vae", help="diffusion: the trained VAE checkpoint")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--max-steps", type=int, help="override the configuration's max_steps")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a key of the configuration (the value read as YAML), checked as the file is, "
                        "e.g. --set optim.lr=3e-4 --set data.vae_frames=8")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("encode-latents", help="encode every clip once with a trained VAE (diffusion latent cache)")
    e.add_argument("--vae", required=True, help="the trained VAE checkpoint")
    e.add_argument("--shards", nargs="+", required=True, help="clip shards: paths, URLs (s3://...), brace patterns, or a run's manifest.json[#split]")
    e.add_argument("--out", required=True, help="folder for the latent shards (<label>/<split>-NNNNNN.tar)")
    e.add_argument("--config", help="training configuration whose data settings to use (points, image size)")
    e.set_defaults(func=_cmd_encode_latents)

    dr = sub.add_parser("drive", help="animate a mesh from a monocular video: a GLB with morph targets, FBX or Alembic")
    dr.add_argument("--mesh", required=True, help="GLB/glTF/OBJ to drive (textures and materials are kept)")
    dr.add_argument("--video", required=True, help="mp4 or a folder of frames")
    dr.add_argument("--vae", required=True, help="trained VAE checkpoint")
    dr.add_argument("--diffusion", required=True, help="trained diffusion checkpoint")
    dr.add_argument("--out", required=True, help="the animated mesh to write, by its extension: .glb (morph targets), "
                    ".fbx (shape-key animation) or .abc (per-frame vertex cache), the last two through Blender")
    dr.add_argument("--frames-dir", help="also write one GLB per keyframe here: mesh_00.glb, mesh_01.glb, ...")
    dr.add_argument("--points", help="also write the raw trajectories to this .npz")
    dr.add_argument("--frames", type=int, default=30, help="keyframes to generate (default: %(default)s)")
    dr.add_argument("--fps", type=float, help="playback rate (default: the video's, else 30)")
    dr.add_argument("--delta", type=float, default=0.002, help="jitter threshold, normalised units (default: %(default)s)")
    dr.add_argument("--seed", type=int, default=0)
    dr.add_argument("--chunk", type=int, default=65_536, help="query points decoded at once")
    dr.set_defaults(func=_cmd_drive)

    ev = sub.add_parser("eval", help="held-out clips: Table 1's metrics and ActionBench's (CD-3D, CD-4D, CD-M); "
                                     "resumable per clip")
    ev.add_argument("--shards", nargs="+", required=True, help="test shards: paths, URLs (s3://...), brace patterns, or a run's manifest.json[#split]")
    ev.add_argument("--vae", required=True)
    ev.add_argument("--diffusion", help="also evaluate full generation from each clip's monocular video")
    ev.add_argument("--out", required=True)
    ev.add_argument("--max-clips", type=int)
    ev.add_argument("--eval-points", type=int, default=10_000, help="dense points per frame for Chamfer")
    ev.add_argument("--actionbench-points", type=int, default=100_000,
                    help="dense (tracked) points per frame for CD-3D, CD-4D and CD-M (default: %(default)s, ActionBench's)")
    ev.add_argument("--alignment", choices=("similarity", "actionbench"), default="similarity",
                    help="alignment of CD-3D, CD-4D and CD-M: similarity (closed-form ICP, uniform scale; the "
                         "default here: measured ~0.75 s a frame on 2 CPU cores against ~86 s for actionbench at "
                         "10k ICP points) or actionbench (the reference's gradient ICP with a scale per axis, "
                         "for figures beside ActionMesh's; eval-points' default)")
    ev.add_argument("--lpips-backbone", help="torchvision's AlexNet weights (alexnet-owt-7be5be79.pth) for LPIPS, "
                                             "if not in torch hub's cache")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--assets", nargs="+", help="source asset files or folders (by uid): render the decoded "
                                                "vertices with each clip's cameras and light for PSNR/SSIM")
    ev.add_argument("--render-threads", type=int, default=0, help="Blender render threads (default: all)")
    ev.add_argument("--ray-address", help="evaluate clips in parallel on this Ray cluster (e.g. auto or "
                                          "127.0.0.1:6379); with --assets, --out must be on storage every node sees")
    ev.add_argument("--workers", type=int, default=0, help="with --ray-address: Ray actors, a CPU each "
                                                           "(default: one per CPU of the cluster)")
    ev.set_defaults(func=_cmd_eval)

    ep = sub.add_parser("eval-points", help="ActionBench's CD-3D, CD-4D and CD-M of predicted clips against tracked GT points",
                        description="PRED: a clip (a folder of mesh_*.glb, or points as .npy) or a folder of "
                                    "<uid>/ clips; GT: surfaces.npy (or a folder holding it) or ActionBench's "
                                    "folder of <uid>/surfaces.npy. Every uid in both is scored.")
    ep.add_argument("pred", help="predicted clip, or folder of <uid>/ clips")
    ep.add_argument("gt", help="GT surfaces.npy or its folder, or a folder of <uid>/surfaces.npy")
    ep.add_argument("--out", help="write the per-clip CSV (uid, kind: prediction or a control, cd_3d, cd_4d, cd_m) here")
    ep.add_argument("--frames", type=int, help="score the first N frames (default: all of the GT's)")
    ep.add_argument("--icp-points", type=int, help="points per frame for the alignment (default: 10,000)")
    ep.add_argument("--chamfer-points", type=int, help="points sampled per frame from predicted meshes (default: 100,000)")
    ep.add_argument("--seed", type=int, help="seed of the mesh sampling and the ICP subset (default: 44)")
    ep.add_argument("--alignment", choices=("actionbench", "similarity"), default="actionbench",
                    help="actionbench: the reference's gradient ICP with a scale per axis (figures to put "
                         "beside published ones); similarity: closed-form ICP with one uniform scale, "
                         "stricter and ~20x faster (default: actionbench)")
    ep.add_argument("--no-controls", action="store_true",
                    help="skip the controls (the GT's first frame held still, and its time-mean pose), "
                         "scored beside every prediction by default")
    ep.set_defaults(func=_cmd_eval_points)

    args = ap.parse_args(argv)
    from curation.output_lock import OutputLocked
    # SIGTERM unwinds like Ctrl-C, so running Blender jobs are killed rather than orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return args.func(args)
    except PipelineConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, ConnectionError, OutputLocked, FileNotFoundError) as exc:  # the last: a path given, not there
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: whatever was finished is kept (run: the journal, the committed shards)
        lead = "\n" if sys.stderr.isatty() else ""  # past the terminal's ^C or a progress bar
        hint = "; run the same command to resume" if args.command == "run" else ""
        print(f"{lead}interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
