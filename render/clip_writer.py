"""Write one clip folder (the members of the clip contract) atomically (no bpy).

Members go to a hidden temporary folder beside the target, which is renamed into place only when
complete: a crash or kill leaves a `.tmp-*` folder that the launcher removes, never a partial clip.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
from PIL import Image

TMP_PREFIX = ".tmp-"
_KEY_TAIL = re.compile(r"_\d+(_w\d+)?")


def clip_key(uid: str, animation_index: int, window: int = 0) -> str:
    """A clip's key: its asset's uid, the animation's index, and the window's when there are several."""
    return f"{uid}_{animation_index}" if window == 0 else f"{uid}_{animation_index}_w{window}"


def is_clip_key_of(key: str, uid: str) -> bool:
    """Whether `key` names a clip of `uid` (not of a uid that merely starts with it: `a_1_0` is a
    clip of `a_1`, not of `a`)."""
    return key.startswith(uid) and _KEY_TAIL.fullmatch(key[len(uid):]) is not None


class ClipWriter:
    def __init__(self, out_dir: str, key: str):
        self.final = os.path.join(out_dir, key)
        self.tmp = os.path.join(out_dir, f"{TMP_PREFIX}{key}-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)
        self.view_dir = os.path.join(self.tmp, ".views")
        os.makedirs(self.view_dir)

    def view_path(self, view: int) -> str:
        """Where the renderer writes one view of the current frame."""
        return os.path.join(self.view_dir, f"view{view}.png")

    def write_frame(self, t: int, n_views: int) -> None:
        """Join the rendered views side by side (view order) into frame<tt>.png, RGBA, n_views*W x H."""
        views = [np.asarray(Image.open(self.view_path(v)).convert("RGBA")) for v in range(n_views)]
        Image.fromarray(np.concatenate(views, axis=1)).save(
            os.path.join(self.tmp, f"frame{t:02d}.png"), compress_level=1)

    def write_arrays(self, verts: np.ndarray, faces: np.ndarray) -> None:
        np.save(os.path.join(self.tmp, "verts.npy"), verts.astype(np.float32))
        np.save(os.path.join(self.tmp, "faces.npy"), faces.astype(np.int32))

    def write_json(self, name: str, obj: dict) -> None:
        with open(os.path.join(self.tmp, name), "w") as f:
            json.dump(obj, f, indent=1)

    def commit(self) -> str:
        shutil.rmtree(self.view_dir)
        if os.path.exists(self.final):  # a clip from an earlier run: replaced whole
            shutil.rmtree(self.final)
        os.rename(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
