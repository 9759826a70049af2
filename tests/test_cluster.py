"""The cluster path for real, on one machine: outputs in an S3 bucket (moto's server), inputs read from
the bucket, render tasks on a second Ray node that shares no output folder with the driver, and a
driver killed with SIGKILL mid-run that resumes to every accepted clip in exactly one shard. Each run
is compared with the same pipeline and seed written by an embedded run to a local folder."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import webdataset as wds

from curation.clip_processing import thumb_path
from dataset.storage import Store, register_with_webdataset

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "driveanymesh"]
NAMES = ["rigid_spinner", "static_statue", "blob_shapekeys", "runaway"]
ACCEPTED = {"rigid_spinner_0", "blob_shapekeys_0"}
TINY = ["keyframes.count=6", "render.resolution=32", "render.samples=1", "split.test_fraction=0.5",
        "shards.max_samples=1", "source.kind=local"]


def run_demo(out: str, source: str, *extra: str, env=None, workers: int = 2, popen: bool = False):
    """The `demo` pipeline at tiny settings on `source`, through the command line."""
    cmd = CLI + ["run", "demo", "--out", out, *(f"--set={s}" for s in TINY + [f"source.path={source}"]), *extra]
    if workers:
        cmd += ["--workers", str(workers)]
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def members(store: Store) -> dict[str, dict[str, bytes]]:
    """Every clip in the shards, read back with webdataset from the shards' own URLs; each shard's
    sha256 checked against the manifest, and each key in one shard."""
    register_with_webdataset()
    manifest = json.loads(store.read("manifest.json"))
    out = {}
    for s in manifest["shards"]:
        assert hashlib.sha256(store.read(s["path"])).hexdigest() == s["sha256"]
        got = list(wds.WebDataset(store.url(s["path"]), shardshuffle=False))
        assert [x["__key__"] for x in got] == s["keys"]
        for x in got:
            assert x["__key__"] not in out, "a clip in two shards"
            out[x["__key__"]] = {k: v for k, v in x.items() if not k.startswith("__")}
    return out


def same_clips(got: dict, want: dict) -> bool:
    """Equal keys and member bytes; names the first member that differs."""
    assert sorted(got) == sorted(want)
    for key in want:
        for member in sorted(set(got[key]) | set(want[key])):
            a, b = got[key].get(member), want[key].get(member)
            at = next((i for i, (x, y) in enumerate(zip(a or b"", b or b"")) if x != y), 0)
            assert a == b, f"{key}.{member} differs at byte {at}: {(a or b'')[max(0, at - 60):at + 30]!r} vs {(b or b'')[max(0, at - 60):at + 30]!r}"
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory, demo_assets) -> dict:
    """The embedded run to a local folder: what every cluster run must equal."""
    work = tmp_path_factory.mktemp("reference")
    listing = work / "assets.txt"
    listing.write_text("\n".join(demo_assets[n]["path"] for n in NAMES) + "\n")
    proc = run_demo(str(work / "run"), str(listing))
    assert proc.returncode == 0, proc.stderr[-3000:]
    clips = members(Store(str(work / "run")))
    assert set(clips) == ACCEPTED
    return {"listing": str(listing), "clips": clips}


def upload_assets(bucket: str, demo_assets) -> str:
    store = Store(f"{bucket}/assets")
    for n in NAMES:
        with open(demo_assets[n]["path"], "rb") as f:
            store.write(os.path.basename(demo_assets[n]["path"]), f.read())
    return store.url() + "/"


def test_demo_pipeline_writes_everything_to_s3_and_matches_a_local_run(reference, s3_bucket):
    out = f"{s3_bucket['url']}/run"
    proc = run_demo(out, reference["listing"], env=s3_bucket["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"manifest: {out}/manifest.json" in proc.stdout and "verified: 2 accepted clips" in proc.stdout
    store = Store(out)
    names = store.list()
    for must in ("manifest.json", "audit.parquet", "report/index.html", "run.json", "audit/journal-000000.jsonl",
                 thumb_path("runaway_0"), thumb_path("rigid_spinner_0")):
        assert must in names, must
    assert not [n for n in names if n.startswith("staging/") or ".tmp-" in n]
    assert same_clips(members(store), reference["clips"])  # same keys, same member bytes
    assert "source.kind=local" in json.loads(store.read("run.json"))["overrides"]
    verify = subprocess.run(CLI + ["verify", out], env=s3_bucket["env"], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    why = subprocess.run(CLI + ["audit", out, "why", "runaway"], env=s3_bucket["env"], capture_output=True, text=True)
    assert "bounds_max_abs = " in why.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(*args: str, env) -> subprocess.Popen:
    """One Ray node, as a user starts it (`ray start ... --block`), in its own process group. Its
    dashboard agent (which runs the jobs the head is sent) listens on a free port, not Ray's fixed
    52365: another Ray on the machine (a `make demo` beside the tests) may hold that one."""
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    ports = ["--dashboard-agent-listen-port", str(free_port())]
    if "--head" in args:
        ports += ["--ray-client-server-port", str(free_port())]
    return subprocess.Popen([ray, "start", "--block", "--disable-usage-stats", *ports,
                             *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def ray_cli(*args: str, env) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_job_submitted_to_two_authenticated_nodes_renders_from_and_to_the_bucket(reference, s3_bucket,
                                                                                    demo_assets, tmp_path):
    """CLUSTER.md's path: a generated token on every node and the submitter (RAY_AUTH_MODE=token,
    RAY_AUTH_TOKEN), the job server of the project's own install (its `cluster` extra), `ray job submit
    --working-dir .`; render tasks need a resource only the second node has; assets and outputs are in
    the bucket. A client without the token, or with another, is refused."""
    import secrets

    source = upload_assets(s3_bucket["url"], demo_assets)
    out = f"{s3_bucket['url']}/run"
    port, dashboard = free_port(), free_port()
    address, jobs = f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}"
    home = tmp_path / "home"
    home.mkdir()  # no ~/.ray/auth_token from this machine's history: the token comes from the environment
    plain = {**s3_bucket["env"], "HOME": str(home)}
    plain = {k: v for k, v in plain.items() if not k.startswith("RAY_AUTH")}
    env = {**plain, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    head = ray_start("--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                     "--temp-dir", temp, "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), env=env)
    renderer = None
    try:
        renderer = ray_start("--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
                             "--resources", '{"render": 2}', env=env)
        for _ in range(60):  # the job server answers once the head's dashboard is up (each try a few s)
            if (listed := ray_cli("job", "list", "--address", jobs, env=env)).returncode == 0:
                break
            assert head.poll() is None, "the head stopped"
        assert listed.returncode == 0, listed.stderr[-2000:]
        unauthenticated = ray_cli("job", "list", "--address", jobs, env=plain)
        wrong = ray_cli("job", "list", "--address", jobs, env={**env, "RAY_AUTH_TOKEN": "0" * 64})
        # no wait for the second node: tasks that need `render` queue until it has joined
        entry = [sys.executable, "-m", "driveanymesh", "run", "demo", "--out", out,
                 *(f"--set={s}" for s in TINY + [f"source.path={source}", "ray.resources_per_task={render: 1}"])]
        submitted = ray_cli("job", "submit", "--address", jobs, "--working-dir", ROOT, "--", *entry, env=env)
        nodes = subprocess.run([sys.executable, "-c", "import json, ray; ray.init(address=%r, log_to_driver=False); "
                                "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))"
                                % address], capture_output=True, text=True, env=env)
    finally:
        for node in (renderer, head):
            if node is not None:
                stop(node)
    assert unauthenticated.returncode != 0 and "Missing authentication token" in unauthenticated.stdout + unauthenticated.stderr
    assert wrong.returncode != 0 and "Invalid authentication token" in wrong.stdout + wrong.stderr
    assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-3000:]
    assert "verified: 2 accepted clips" in submitted.stdout and "succeeded" in submitted.stdout
    nodes = json.loads(nodes.stdout.strip().splitlines()[-1])
    assert len(nodes) == 2
    (render_node,) = [n for n, res in nodes.items() if "render" in res]
    store = Store(out)
    assert same_clips(members(store), reference["clips"])
    rows = [json.loads(ln) for seg in store.list("audit") for ln in store.read(seg).decode().splitlines()]
    assert sorted(r["uid"] for r in rows if r["stage"] == "asset") == sorted(NAMES)
    assert {r["node_id"] for r in rows} == {render_node} and all(r["host"] for r in rows)
    assert subprocess.run(CLI + ["verify", out], env=s3_bucket["env"]).returncode == 0


def test_killed_s3_run_resumes_to_exactly_once(reference, s3_bucket):
    out = f"{s3_bucket['url']}/run"
    store = Store(out)
    proc = run_demo(out, reference["listing"], env=s3_bucket["env"], popen=True)
    while not any('"stage": "asset"' in store.read(seg).decode() for seg in store.list("audit")):
        assert proc.poll() is None, "the run ended before the kill"  # a stalled run meets pytest's timeout
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its embedded Ray, mid-run
    proc.wait()
    finished = {json.loads(ln)["uid"] for seg in store.list("audit") for ln in store.read(seg).decode().splitlines()
                if json.loads(ln)["stage"] == "asset"}
    assert 1 <= len(finished) < len(NAMES)

    again = run_demo(out, reference["listing"], env=s3_bucket["env"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert same_clips(members(store), reference["clips"])
    assert not [n for n in store.list() if n.startswith("staging/") or ".tmp-" in n]
    assert subprocess.run(CLI + ["verify", out], env=s3_bucket["env"]).returncode == 0
