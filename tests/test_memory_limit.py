"""The per-job memory limit (render.launcher, `memory_limit_bytes`).

Measured at 48 px / 4 samples (tiny_job), resident peak of the job process: a demo asset 0.64 GB
(1 to 64 render threads); the spinner below with a 12288^2 texture 3.15 GB (the image decoded as bytes,
then as floats for the texture statistics and for Cycles). The 1.5 GiB limit sits 2.4x above the one
and 2x below the other. As a module (`python -m tests.test_memory_limit --request R`) this file is a
stand-in job that reserves untouched memory, for the data-size backstop.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

LIMIT = 3 << 29  # 1.5 GiB
HEAVY_TEXTURE = 12288


def _png_solid(side: int, rgb=(200, 120, 40)) -> bytes:
    """A side x side RGB PNG of one colour, compressed row by row (2 MB at 12288)."""
    row = b"\x00" + bytes(rgb) * side
    comp = zlib.compressobj(1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def textured_spinner_glb(path, texture_side: int) -> str:
    """A unit cube with a side x side base-colour texture, spinning about up for 2 s (9 keys)."""
    faces = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for sign in (-1, 1):
            quad = []
            for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = [0.0] * 3
                p[axis], p[u], p[v] = sign * 0.5, du * 0.5, dv * 0.5
                quad.append(p)
            faces.append(quad if sign > 0 else quad[::-1])
    pos = np.array(faces, np.float32).reshape(-1, 3)
    uv = np.tile(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32), (6, 1))
    idx = np.array([[4 * f, 4 * f + 1, 4 * f + 2, 4 * f, 4 * f + 2, 4 * f + 3] for f in range(6)], np.uint16).ravel()
    times = np.linspace(0, 2, 9, dtype=np.float32)
    rot = np.stack([0 * times, np.sin(times * np.pi / 2), 0 * times, np.cos(times * np.pi / 2)], 1).astype(np.float32)
    buf, views = b"", []
    for blob in (pos.tobytes(), uv.tobytes(), idx.tobytes(), times.tobytes(), rot.tobytes(), _png_solid(texture_side)):
        views.append({"buffer": 0, "byteOffset": len(buf), "byteLength": len(blob)})
        buf += blob + b"\x00" * (-len(blob) % 4)
    accessors = [
        {"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3",
         "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
        {"bufferView": 1, "componentType": 5126, "count": len(uv), "type": "VEC2"},
        {"bufferView": 2, "componentType": 5123, "count": len(idx), "type": "SCALAR"},
        {"bufferView": 3, "componentType": 5126, "count": len(times), "type": "SCALAR", "min": [0.0], "max": [2.0]},
        {"bufferView": 4, "componentType": 5126, "count": len(rot), "type": "VEC4"},
    ]
    gltf = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": "Box"}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
            "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
            "textures": [{"source": 0}], "images": [{"bufferView": 5, "mimeType": "image/png"}],
            "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(buf)}],
            "animations": [{"name": "Spin", "channels": [{"sampler": 0, "target": {"node": 0, "path": "rotation"}}],
                            "samplers": [{"input": 3, "output": 4, "interpolation": "LINEAR"}]}]}
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    with open(path, "wb") as f:
        f.write(b"glTF" + struct.pack("<II", 2, 12 + 8 + len(js) + 8 + len(buf)))
        f.write(struct.pack("<I", len(js)) + b"JSON" + js + struct.pack("<I", len(buf)) + b"BIN\x00" + buf)
    return str(path)


def test_a_job_past_the_limit_is_killed_and_its_neighbour_renders(demo_assets, tmp_path):
    from render.clip_writer import TMP_PREFIX
    from render.launcher import render_asset
    from tests.conftest import tiny_job

    heavy = textured_spinner_glb(tmp_path / "heavy.glb", HEAVY_TEXTURE)
    normal = demo_assets["creature_textured"]["path"]
    # Side by side, same limit: the kill of one job's group must not touch the other.
    with ThreadPoolExecutor(2) as pool:
        jobs = {name: pool.submit(render_asset, path, str(tmp_path / name), tiny_job(), memory_limit_bytes=LIMIT)
                for name, path in (("heavy", heavy), ("normal", normal))}
        res = {name: job.result() for name, job in jobs.items()}

    assert res["normal"].ok, res["normal"].failure
    assert len(res["normal"].clips) == 1
    fail = res["heavy"].failure
    assert fail is not None and fail["kind"] == "out_of_memory", (fail, res["heavy"].log_tail)
    assert "1536 MiB" in fail["message"] and "peak" in fail["message"]
    assert res["heavy"].clips == []
    assert not [n for n in os.listdir(tmp_path / "heavy") if n.startswith(TMP_PREFIX)]


def test_an_allocation_past_the_data_cap_is_out_of_memory(tmp_path):
    """The backstop: a reservation the watchdog cannot see (untouched pages) fails at once in the job."""
    from render.launcher import MemoryWatch, _run

    def job(reserve: int) -> dict | None:
        req, log = tmp_path / "request.json", tmp_path / "job.log"
        req.write_text(json.dumps({"result": str(tmp_path / "result.json"), "reserve": reserve}))
        watch = MemoryWatch(256 << 20)  # data cap: 1.5 GiB
        failure = _run(str(req), str(log), 60, str(tmp_path / "p.json"), None, str(tmp_path), "stub",
                       dict(os.environ), module="tests.test_memory_limit", watch=watch)
        if failure is None:
            res = json.loads((tmp_path / "result.json").read_text())
            failure = None if res["status"] == "ok" else res["failure"]
        return watch.explain(failure, str(log))

    assert job(64 << 20) is None
    fail = job(4 << 30)  # would succeed untouched (overcommit) without the cap
    assert fail is not None and fail["kind"] == "out_of_memory", fail
    assert "1536 MiB" in fail["message"] and "256 MiB" in fail["message"]


def test_a_negative_limit_is_refused(tmp_path):
    from render.launcher import render_asset
    from tests.conftest import tiny_job

    with pytest.raises(ValueError):
        render_asset(str(tmp_path / "x.glb"), str(tmp_path), tiny_job(), memory_limit_bytes=-1)


def _stand_in_job(req: dict) -> dict:
    held = np.zeros(req["reserve"], np.uint8)  # calloc: reserved, not touched
    return {"status": "ok", "bytes": int(held.nbytes)}


if __name__ == "__main__":
    from render.job_request import serve

    sys.exit(serve(sys.argv[1:], "stand-in job that reserves memory", _stand_in_job))
