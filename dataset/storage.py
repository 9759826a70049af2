"""Where a run's outputs (and a folder of input assets) live: a local folder or an fsspec URL
(`s3://bucket/prefix`, `gs://...`, `file://...`), behind one small interface, so that no worker
assumes it sees the driver's disk and the driver never assumes it sees a worker's.

Writes are atomic at their final name. On a POSIX filesystem: a temporary name in the same folder,
fsync, rename. On an object store: one PUT per object (s3fs switches to a multipart upload for large
files, which also appears only when completed), so an object is whole at its key or absent.
Credentials and endpoints come from the usual places of each backend (for S3: IAM roles, AWS_*
variables, `~/.aws`; `AWS_ENDPOINT_URL` for an S3-compatible store; `FSSPEC_S3_*` variables).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from urllib.parse import urlparse

import fsspec
from fsspec.implementations.local import LocalFileSystem

TMP_MARK = ".tmp-"  # in the name of every temporary on a POSIX filesystem (removed on resume)


def is_url(path: str) -> bool:
    """True for `scheme://...` (a Windows drive letter is not a scheme)."""
    return len(urlparse(path).scheme) > 1


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to the local `path` under a temporary name, fsync, rename: all of it or none."""
    tmp = f"{path}{TMP_MARK}{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Store:
    """A root (folder or URL) and paths relative to it, always written with '/'."""

    def __init__(self, root: str):
        root = str(root)
        if not is_url(root):
            root = os.path.abspath(root)
        self.root = root.rstrip("/") or "/"
        self.fs, self._base = fsspec.core.url_to_fs(self.root)
        self._base = self._base.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    def __reduce__(self):  # travels to Ray workers as its root only; each side opens its own client
        return (Store, (self.root,))

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    def _path(self, rel: str) -> str:
        return f"{self._base}/{rel}" if rel else self._base

    def url(self, rel: str = "") -> str:
        """What a user (or webdataset) opens: a local path, or the URL of the object."""
        if self.local:
            return os.path.join(self.root, *rel.split("/")) if rel else self.root
        return f"{self.root}/{rel}" if rel else self.root

    def child(self, rel: str) -> "Store":
        return Store(self.url(rel))

    def write(self, rel: str, data: bytes) -> None:
        if self.local:
            path = self._path(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, data)
        else:
            self.fs.pipe_file(self._path(rel), data)

    @contextlib.contextmanager
    def writer(self, rel: str):
        """A file to stream `rel` into; it appears at `rel`, whole, only when the block ends without
        an error (locally: temporary name and rename; object store: a node-local file, then one upload)."""
        if self.local:
            path = self._path(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}{TMP_MARK}{os.getpid()}"
        else:
            fd, tmp = tempfile.mkstemp(prefix="dam-upload-")
            os.close(fd)
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            if self.local:
                os.replace(tmp, path)
            else:
                self.fs.put_file(tmp, self._path(rel))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def read(self, rel: str) -> bytes:
        return self.fs.cat_file(self._path(rel))

    def get_file(self, rel: str, local_path: str) -> None:
        self.fs.get_file(self._path(rel), local_path)

    def exists(self, rel: str) -> bool:
        self.fs.invalidate_cache(self._path(rel))  # other processes write here: no stale listings
        return self.fs.exists(self._path(rel))

    def list(self, prefix: str = "") -> list[str]:
        """Relative paths of every file under `prefix` (recursively), sorted."""
        top = self._path(prefix)
        self.fs.invalidate_cache(top)
        if not self.fs.exists(top):
            return []
        n = len(self._base) + 1
        return sorted(p[n:] for p in self.fs.find(top) if not p.endswith("/"))

    def delete(self, rels) -> None:
        rels = [rels] if isinstance(rels, str) else list(rels)
        if rels:
            self.fs.rm([self._path(r) for r in rels])

    def size(self, rel: str) -> int:
        return int(self.fs.size(self._path(rel)))


def fetch_to(url: str, folder: str) -> str:
    """Copy an input file from a URL into the node-local `folder`; returns its local path.

    A .gltf names its buffers and images by relative URI: those come along, beside it, so the
    importer finds them (a .glb is self-contained).
    """
    import json

    fs, path = fsspec.core.url_to_fs(url)
    local = os.path.join(folder, os.path.basename(path))
    fs.get_file(path, local)
    if local.lower().endswith(".gltf"):
        with open(local, encoding="utf-8") as f:
            doc = json.load(f)
        base = path.rsplit("/", 1)[0]
        for item in doc.get("buffers", []) + doc.get("images", []):
            uri = item.get("uri", "")
            if uri and not uri.startswith("data:") and not is_url(uri):
                dest = os.path.normpath(os.path.join(folder, uri))
                if not dest.startswith(os.path.abspath(folder) + os.sep):
                    raise ValueError(f"{url}: resource {uri!r} points outside the asset's folder")
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                fs.get_file(f"{base}/{uri}", dest)
    return local



# Schemes webdataset (1.0) has no reader for, or reads only with an external command line tool.
FSSPEC_SHARD_SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss")


def _gopen_fsspec(url, mode="rb", bufsize=8192, **kw):
    return fsspec.open(url, mode).open()


def register_with_webdataset() -> None:
    """Let webdataset (training loaders, eval, encode-latents) open object-store shard URLs through
    fsspec, with the same credentials and endpoints as the pipeline's outputs."""
    from webdataset.gopen import gopen_schemes

    for scheme in FSSPEC_SHARD_SCHEMES:
        gopen_schemes[scheme] = _gopen_fsspec
