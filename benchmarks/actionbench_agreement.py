"""Do our ActionBench figures equal the reference's? Runs ActionMesh's own `actionbench/` code (a
checkout of facebookresearch/actionmesh; its PyTorch3D imports served by the CPU equivalents in
benchmarks/pytorch3d_cpu/) and `train.actionbench.score_clip(..., alignment="actionbench")` on the
same ActionBench-layout folder, and prints each figure's ratio ours / theirs.

    python benchmarks/actionbench_agreement.py --reference CHECKOUT [--data runs/demo] [--clips 3]
        [--frames 6] [--icp-points 1000] [--chamfer-points 20000] [--out DIR]

The inputs: the first `--clips` clips of a pipeline output (their meshes, `--frames` keyframes), the
ground truth as ActionBench gives it (tracked surface points, `surfaces.npy`), and six predictions per
clip as per-frame GLBs: an exact copy, vertex noise, the clip time-reversed, its first frame held
still, a rigid motion with a uniform scale, and a scale per axis (0.833, 1.176, 1). Both sides use the
same point counts and seed 44 (the reference CLI's), so a ratio away from 1 is a difference of method.
"""
import argparse
import io
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import trimesh  # noqa: E402
import webdataset as wds  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from dataset.shard_list import shard_urls  # noqa: E402
from train.actionbench import sample_tracked, score_clip  # noqa: E402

METRICS = ("cd_3d", "cd_4d", "cd_m")
THEIRS = {"cd_3d": "cd_3d", "cd_4d": "cd_4d", "cd_m": "cd_motion"}


def predictions(verts: np.ndarray, rng) -> dict[str, np.ndarray]:
    """(T, V, 3) vertex sequences, one per case."""
    size = float(np.ptp(verts[0], axis=0).max())
    rot = Rotation.from_rotvec(np.deg2rad(30) * np.array([1.0, 2.0, 0.5]) / np.linalg.norm([1.0, 2.0, 0.5]))
    return {
        "exact copy": verts,
        "vertex noise": verts + rng.normal(scale=0.01 * size, size=verts.shape),
        "time-reversed": verts[::-1],
        "first frame held": np.repeat(verts[:1], len(verts), axis=0),
        "rigid + uniform scale": 1.2 * verts @ rot.as_matrix().T + [0.1, -0.05, 0.08],
        "per-axis scaled": verts * [0.833, 1.176, 1.0],
    }


def write_inputs(data: str, out: str, clips: int, frames: int, gt_points: int) -> tuple[list[str], list[str]]:
    """GT at out/gt/<uid>/surfaces.npy and predictions at out/pred/<case>/<uid>/mesh_XX.glb."""
    urls = shard_urls([os.path.join(data, "manifest.json")])
    uids, rng = [], np.random.default_rng(0)
    for sample in wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()):
        verts = np.load(io.BytesIO(sample["verts.npy"])).astype(np.float64)[:frames]
        faces = np.load(io.BytesIO(sample["faces.npy"]))
        uid = sample["__key__"]
        meshes = [trimesh.Trimesh(v, faces, process=False) for v in verts]
        gt = sample_tracked(meshes, gt_points, seed=7)
        os.makedirs(os.path.join(out, "gt", uid), exist_ok=True)
        np.save(os.path.join(out, "gt", uid, "surfaces.npy"),
                np.concatenate([gt, np.zeros_like(gt)], axis=-1).astype(np.float32))
        cases = predictions(verts, rng)
        for case, seq in cases.items():
            folder = os.path.join(out, "pred", case, uid)
            os.makedirs(folder, exist_ok=True)
            for t, v in enumerate(seq):
                trimesh.Trimesh(v, faces, process=False).export(os.path.join(folder, f"mesh_{t:02d}.glb"))
        uids.append(uid)
        if len(uids) == clips:
            break
    return uids, list(cases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, help="a checkout of facebookresearch/actionmesh")
    ap.add_argument("--data", default=os.path.join(ROOT, "runs", "demo"), help="a pipeline output")
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--gt-points", type=int, default=20_000)
    ap.add_argument("--icp-points", type=int, default=1_000)
    ap.add_argument("--chamfer-points", type=int, default=20_000)
    ap.add_argument("--out", default="/tmp/actionbench_agreement")
    args = ap.parse_args()

    bench = os.path.join(os.path.abspath(args.reference), "actionbench")
    if not os.path.isfile(os.path.join(bench, "evaluate_dataset.py")):
        sys.exit(f"error: {bench}/evaluate_dataset.py not found: --reference is a checkout of facebookresearch/actionmesh")
    try:
        import pytorch3d  # noqa: F401
    except ImportError:  # no wheel for this torch on the CPU: the exact equivalents of what it uses
        sys.path.insert(0, os.path.join(ROOT, "benchmarks", "pytorch3d_cpu"))
    sys.path.insert(0, bench)
    from pathlib import Path

    import torch

    fork_rng = torch.random.fork_rng

    def cpu_fork_rng(devices=None, enabled=True, **kw):
        # the reference forks the RNG of its meshes' device, and on a CPU-only torch build
        # fork_rng(devices=[cpu]) asks CUDA for that device's state and raises; the CPU generator,
        # the one its seeded draws use here, is forked either way
        if devices is not None and all(torch.device(d).type == "cpu" for d in devices):
            devices = []
        return fork_rng(devices=devices, enabled=enabled, **kw)

    torch.random.fork_rng = cpu_fork_rng

    import evaluate_dataset as reference

    uids, cases = write_inputs(args.data, args.out, args.clips, args.frames, args.gt_points)
    print(f"{len(uids)} clips x {len(cases)} predictions, {args.frames} frames, ICP {args.icp_points} points, "
          f"Chamfer {args.chamfer_points}: inputs in {args.out}")
    print("| case | clip | ours CD-3D / CD-4D / CD-M | theirs | ratio ours / theirs |")
    print("| --- | --- | --- | --- | --- |")
    ratios, seconds = {m: [] for m in METRICS}, {"ours": 0.0, "theirs": 0.0}
    for case in cases:
        for uid in uids:
            pred = os.path.join(args.out, "pred", case)
            t = time.perf_counter()
            r = reference.evaluate_sample(uid, Path(args.out, "gt"), Path(pred), device="cpu",
                                          n_pts_icp=args.icp_points, n_pts_chamfer=args.chamfer_points, seed=44)
            seconds["theirs"] += time.perf_counter() - t
            if r.status != "success":
                sys.exit(f"error: the reference failed on {case}/{uid}: {r.error_message}")
            theirs = {m: getattr(r, THEIRS[m]) for m in METRICS}
            t = time.perf_counter()
            ours = score_clip(os.path.join(pred, uid), os.path.join(args.out, "gt", uid), icp_points=args.icp_points,
                              chamfer_points=args.chamfer_points, seed=44, alignment="actionbench")
            seconds["ours"] += time.perf_counter() - t
            ratio = {m: ours[m] / theirs[m] for m in METRICS}
            for m in METRICS:
                ratios[m].append(ratio[m])
            fmt = lambda d: " / ".join(f"{d[m]:.5f}" for m in METRICS)  # noqa: E731
            print(f"| {case} | {uid} | {fmt(ours)} | {fmt(theirs)} | {' / '.join(f'{ratio[m]:.3f}' for m in METRICS)} |",
                  flush=True)
    for m in METRICS:
        r = np.asarray(ratios[m])
        print(f"{m}: ratio ours / theirs from {r.min():.3f} to {r.max():.3f}, {np.mean(np.abs(r - 1) <= 0.05):.0%} "
              f"of cases within 5%")
    print(f"seconds: ours {seconds['ours']:.0f}, theirs {seconds['theirs']:.0f}")


if __name__ == "__main__":
    main()
