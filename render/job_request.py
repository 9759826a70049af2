"""The protocol between `render.launcher` and a Blender job process (`render.blender_job`,
`render.replay_job`): the job reads a JSON request, does its work, and always writes a JSON result
(the work's own, or a failure with a kind and message) to the request's `result` path, atomically.
A crash leaves no result, which the launcher reports as kind "crash". Imports no bpy: a job calls
`start_job_process()` before importing bpy."""
from __future__ import annotations

import argparse
import json
import os
import traceback

from render.core_lease import pin_from_env
from render.orphan_guard import exit_with_launcher


class AssetFailure(Exception):
    """A failure that is the asset's (unreadable, no geometry, no animation), with its kind."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def start_job_process() -> None:
    """Before bpy starts its thread pools: end with the launcher, keep to the leased cores."""
    exit_with_launcher()
    pin_from_env()


def serve(argv, description: str, handle) -> int:
    """Run `handle(request) -> result dict` on the request named by --request; record any failure."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--request", required=True, help="JSON request written by render.launcher")
    args = ap.parse_args(argv)
    with open(args.request) as f:
        req = json.load(f)
    try:
        result = handle(req)
    except AssetFailure as exc:
        result = {"status": "failed", "failure": {"kind": exc.kind, "message": str(exc)}}
    except Exception as exc:  # our code or Blender's API failed on this asset: recorded, not raised
        result = {"status": "failed", "failure": {
            "kind": "error", "message": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=8)}}
    tmp = req["result"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, req["result"])
    return 0
