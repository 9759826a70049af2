"""A tiny offline Objaverse 1.0 mirror in the objaverse package's own cache layout, and a runner that
uses it through the real package in a subprocess.

The package fixes its cache at `~/.objaverse` when first imported, so code that should read a mirror
must run in a process whose HOME points at it: `run_in_mirror` starts one. That process also refuses
every network access (a `sys.addaudithook` on socket name lookups and connects, which leaves the
package untouched) and reports the attempts, so a test can show the package served every call from
the mirror; with `loopback=True` it lets through 127.0.0.1 only, for a `Loopback` server that plays
huggingface.co (its URL in $DRIVEANYMESH_OBJAVERSE_URL) and answers each request as the test scripted.
"""
from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKETCHFAB_API = "https://api.sketchfab.com/v3"


def make_uid(name: str) -> str:
    """A 32-hex-digit uid like Objaverse's, derived from a readable name."""
    return hashlib.md5(name.encode()).hexdigest()


def annotation(uid: str, name: str = "", *, license: str = "by", animation_count: int = 1,
               vertex_count: int = 5_000, face_count: int = 8_000, categories: tuple[str, ...] = (),
               tags: tuple[str, ...] = ()) -> dict:
    """An annotation record with the real schema's fields and nesting (a Sketchfab model record).

    `categories` are category names ("Places & travel"), `tags` tag slugs ("scan").
    """
    return {
        "uri": f"{SKETCHFAB_API}/models/{uid}",
        "uid": uid,
        "name": name or uid[:8],
        "staffpickedAt": None,
        "viewCount": 10,
        "likeCount": 1,
        "animationCount": animation_count,
        "viewerUrl": f"https://sketchfab.com/3d-models/{uid}",
        "embedUrl": f"https://sketchfab.com/models/{uid}/embed",
        "commentCount": 0,
        "isDownloadable": True,
        "publishedAt": "2021-03-18T09:36:25.430631",
        "tags": [{"name": t, "slug": t, "uri": f"{SKETCHFAB_API}/tags/{t}"} for t in tags],
        "categories": [{"name": c, "uri": f"{SKETCHFAB_API}/categories/{make_uid(c)}"} for c in categories],
        "thumbnails": {"images": [{"uid": make_uid(uid + "thumb"), "size": 1756, "width": 256, "height": 144,
                                   "url": f"https://media.sketchfab.com/models/{uid}/thumbnails/t.jpeg"}]},
        "user": {"uid": make_uid(uid + "user"), "username": "tester", "displayName": "Test Author",
                 "profileUrl": "https://sketchfab.com/tester", "account": "basic",
                 "avatar": {"uri": f"{SKETCHFAB_API}/avatars/{make_uid(uid + 'avatar')}", "images": []},
                 "uri": f"{SKETCHFAB_API}/users/{make_uid(uid + 'user')}"},
        "description": "",
        "faceCount": face_count,
        "createdAt": "2021-03-18T09:31:52.190927",
        "vertexCount": vertex_count,
        "isAgeRestricted": False,
        "archives": {"glb": {"textureCount": 1, "size": 1000, "type": "glb", "textureMaxResolution": 1024,
                             "faceCount": face_count, "vertexCount": vertex_count}},
        "license": license,
    }


def tiny_glb(path: Path, label: str) -> Path:
    """A valid, empty glTF 2.0 binary whose bytes differ per label (so a mix-up of assets shows)."""
    doc = json.dumps({"asset": {"version": "2.0", "extras": {"label": label}},
                      "scenes": [{"nodes": []}], "scene": 0}).encode()
    doc += b" " * (-len(doc) % 4)
    body = struct.pack("<II", len(doc), 0x4E4F534A) + doc
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return path


def write_mirror(home: Path, records: dict[str, dict], glbs: dict[str, Path],
                 dirs: dict[str, str] | None = None) -> Path:
    """Write `home/.objaverse/hf-objaverse-v1/` as objaverse 0.1.7 caches it; returns that folder.

    records: uid -> annotation record (metadata/<dir>.json.gz); glbs: uid -> a GLB file to copy to
    glbs/<dir>/<uid>.glb; dirs: uid -> dir id (default "000-000"). object-paths.json.gz lists every uid
    of either, so a uid with no GLB makes the package try a download and one with no record has no
    annotation.
    """
    root = Path(home) / ".objaverse" / "hf-objaverse-v1"
    dirs = dirs or {}
    uids = list(dict.fromkeys([*records, *glbs]))
    paths = {u: f"glbs/{dirs.get(u, '000-000')}/{u}.glb" for u in uids}
    _write_json_gz(root / "object-paths.json.gz", paths)
    by_dir: dict[str, dict] = {}
    for uid, rec in records.items():
        by_dir.setdefault(dirs.get(uid, "000-000"), {})[uid] = rec
    for dir_id, recs in by_dir.items():
        _write_json_gz(root / "metadata" / f"{dir_id}.json.gz", recs)
    for uid, src in glbs.items():
        dst = root / paths[uid]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return root


def _write_json_gz(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        json.dump(data, f)


_PRELUDE = """
import json, sys
NETWORK = []
LOOPBACK = {loopback}
def _no_network(event, args):
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.connect"):
        host = args[1][0] if event == "socket.connect" else args[0]
        if LOOPBACK and host in ("127.0.0.1", b"127.0.0.1"):
            return
        NETWORK.append(f"{{event}} {{args!r}}")
        raise ConnectionRefusedError(f"test mirror: network access refused ({{event}})")
sys.addaudithook(_no_network)
result = {{}}
"""

_EPILOGUE = """
print("\\n" + json.dumps({"result": result, "network": NETWORK}))
"""

BASE_URL_ENV = "DRIVEANYMESH_OBJAVERSE_URL"  # curation.sources.objaverse reads its download base from it


def start_in_mirror(home: Path, code: str, *, base_url: str = "", loopback: bool = False) -> subprocess.Popen:
    """Start `code` in a fresh Python with HOME=home and no network (127.0.0.1 too if `loopback`);
    downloads go to `base_url` when given. It fills the dict `result`; see run_in_mirror."""
    env = {k: v for k, v in os.environ.items() if k != BASE_URL_ENV}
    env.update({"HOME": str(home), "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
                "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    if base_url:
        env[BASE_URL_ENV] = base_url
    script = _PRELUDE.format(loopback=loopback) + textwrap.dedent(code) + _EPILOGUE
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_in_mirror(home: Path, code: str, timeout: float = 120, *, base_url: str = "",
                  loopback: bool = False) -> dict:
    """Run `code` in a fresh Python with HOME=home and no network; it fills the dict `result`.

    Returns {"result": result, "network": [attempted accesses]}. A failing run raises with its stderr.
    """
    proc = start_in_mirror(home, code, base_url=base_url, loopback=loopback)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"mirror run failed (rc {proc.returncode}):\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


class Loopback:
    """An HTTP server on 127.0.0.1, in a thread, that answers each path by a script of replies.

    replies: URL path ("/glbs/000-000/<uid>.glb") -> list of replies, each used once in order, the
    last one for every later request:
      ("ok", body)               200, Content-Length and the body
      ("status", code)           that status, empty body
      ("drop",)                  the connection closed without an answer
      ("short", body, length)    Content-Length `length`, then `body` (shorter), then closed
      ("stall",)                 the request read, then nothing until the server closes
      ("partial", body, length)  Content-Length `length`, `body`, then held open until the server closes
    `requests` lists the paths asked for; `held` is set once a stall or partial reply is holding.
    Use it as a context manager; `url` is the base to put in $DRIVEANYMESH_OBJAVERSE_URL.
    """

    def __init__(self, replies: dict[str, list[tuple]]):
        self.replies = {path: list(r) for path, r in replies.items()}
        self.requests: list[str] = []
        self.held = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with owner._lock:
                    owner.requests.append(self.path)
                    script = owner.replies.get(self.path) or [("status", 404)]
                    reply = script.pop(0) if len(script) > 1 else script[0]
                kind = reply[0]
                if kind == "drop":
                    self.close_connection = True
                    return
                if kind == "stall":
                    owner.held.set()
                    owner.release.wait()
                    return
                if kind == "status":
                    self.send_response(reply[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, length = reply[1], reply[2] if len(reply) > 2 else len(reply[1])
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if kind == "partial":
                    owner.held.set()
                    owner.release.wait()

            def log_message(self, *args):  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Loopback":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()  # let held handlers return
        self.server.shutdown()
        self.server.server_close()
