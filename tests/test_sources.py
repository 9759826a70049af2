"""The source seam (curation/sources/): a source is one module, reached by the config, the driver, the
command line and the dataset card through `Source` only; the shipped pipelines keep their config
hashes, so outputs made before the seam still resume."""
import json
import os
import subprocess
import sys
import textwrap

from curation import sources
from curation.pipeline_config import available, load_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The config hashes of the shipped pipelines as outputs carry them (run.json, every clip's meta). A
# change here means every existing output of that pipeline refuses to resume: only on purpose.
SHIPPED_HASHES = {"demo": "74c6d48e9e47c62a", "learn": "0ee45b990af59b0e", "local-gpu": "8fd70c655c45bf2d",
                  "objaverse-animated": "4eba44a629472091", "objaverse-xl-animated": "dcd6d4de9d6fd90b",
                  "texverse-animated": "95aea4959f0e4162"}


def test_the_shipped_pipelines_keep_their_config_hashes():
    assert {name: load_pipeline(name).config_hash() for name in available()} == SHIPPED_HASHES
    # what each source leaves out of the hash may change without changing it
    assert load_pipeline("learn", overrides=["source.variants=7", "source.limit=3"]).config_hash() == \
        SHIPPED_HASHES["learn"]
    assert load_pipeline("objaverse-animated", overrides=[
        "source.objaverse.limit=5", "source.objaverse.uids_file=u.txt", "source.objaverse.keep_downloads=true",
        "source.path=/elsewhere"]).config_hash() == SHIPPED_HASHES["objaverse-animated"]
    # and what it keeps in does change it
    assert load_pipeline("objaverse-animated", overrides=["source.objaverse.max_faces=10"]).config_hash() != \
        SHIPPED_HASHES["objaverse-animated"]


def test_every_kind_is_a_registered_source():
    assert sources.kinds() == ("demo", "procedural", "local", "objaverse", "objaverse-xl", "texverse")
    assert sources.get("objaverse").uids_setting == "objaverse.uids_file"
    try:
        sources.get("nope")
        raise AssertionError("an unknown kind must be an error")
    except ValueError as exc:
        assert "nope" in str(exc) and "objaverse" in str(exc)


LISTED = '''
"""A toy source: the files named in its own settings section."""
import json
import os
from dataclasses import dataclass, field

from curation import audit
from curation.sources.base import AssetTask, Source


@dataclass
class ListedSettings:
    files: list[str] = field(default_factory=list)
    weight: float = 1.0   # hashed: it would change what a clip is
    batch: int = 0        # not hashed: how the files are fetched


class ListedSource(Source):
    kind = "listed"
    settings = ListedSettings
    section = "listed"
    hash_excludes = ("listed.batch",)
    uids_setting = "listed.files"
    card_tags = ("listed-tag",)

    def validate(self, pipe):
        if pipe.source.listed.weight <= 0:
            raise ValueError(f"key 'source.listed.weight': must be > 0, got {pipe.source.listed.weight}")

    def select(self, pipe, out):
        tasks = [AssetTask(os.path.splitext(os.path.basename(f))[0], self.kind, license="cc0",
                           info={"name": f"listed {i}", "file": f}) for i, f in enumerate(pipe.source.listed.files)]
        return tasks, [audit.row("dropped_one", "metadata", "rejected", rule="listed_rule", reasons=["toy"])]

    def fetch(self, task, pipe, work):
        if "missing" in task.info["file"]:
            raise FileNotFoundError(task.info["file"])
        return task.info["file"]

    def release(self, task, pipe, path):
        with open(os.environ["LISTED_RELEASED"], "a") as f:
            f.write(json.dumps([task.uid, path]) + "\\n")

    def card_rules(self, source):
        return "Source rules (listed):", {"source.listed.weight": (source.get("listed") or {}).get("weight")}


SOURCES = (ListedSource(),)
'''

PROBE = '''
import dataclasses, json, sys
import curation.sources
curation.sources.__path__.append(sys.argv[1])  # the toy module's folder, as if it were in the package
from curation import dataset_card, driver
from curation.pipeline_config import PipelineConfigError, load_pipeline
from dataset.storage import Store

files = sys.argv[2:]
base = ["source.kind=listed", "source.listed.files=" + json.dumps(files), "keyframes.count=4",
        "render.resolution=16", "render.samples=1"]
pipe = load_pipeline("demo", overrides=base)
r = {"kinds": list(curation.sources.kinds()), "demo_hash": load_pipeline("demo").config_hash(),
     "hash": pipe.config_hash(),
     "hash_batch": load_pipeline("demo", overrides=base + ["source.listed.batch=9"]).config_hash(),
     "hash_weight": load_pipeline("demo", overrides=base + ["source.listed.weight=2"]).config_hash()}
for bad in ("source.listed.nope=1", "source.listed.weight=0"):
    try:
        load_pipeline("demo", overrides=base + [bad])
    except PipelineConfigError as exc:
        r[bad] = str(exc)
limited = load_pipeline("demo", overrides=base + ["source.limit=2"])
tasks, rejected = driver.tasks_for(limited, Store(sys.argv[1] + "/out"))
r["tasks"] = [[t.uid, t.source, t.license] for t in tasks]
r["rejected"] = [[x["uid"], x["rule"]] for x in rejected]
r["rows"] = {t.uid: [[x["stage"], x["status"], x["rule"]] for x in driver.process_asset(t, pipe, Store(sys.argv[1] + "/out"))]
             for t in tasks}
run = dataclasses.asdict(pipe)
r["settings"] = dataset_card._settings(run)
r["front"] = dataset_card._front_matter({"assets": [], "pipeline": "demo", "counts": {"clips": 0, "by_label_split": {}}}, run)
print(json.dumps(r))
'''


def test_a_new_source_is_one_module_that_config_driver_and_card_reach(tmp_path):
    """A source module outside the package's folder, added to its path: its settings section is checked
    like any other, its hash rules apply, the driver selects, fetches and releases through it (the
    audit rows say what happened to each asset), and the dataset card lists its tags and rules."""
    plug = tmp_path / "plug"
    plug.mkdir()
    (plug / "listed.py").write_text(LISTED)
    (tmp_path / "probe.py").write_text(PROBE)
    broken = tmp_path / "broken.glb"
    broken.write_bytes(b"not a glb at all")
    released = tmp_path / "released.jsonl"
    released.write_text("")
    proc = subprocess.run([sys.executable, str(tmp_path / "probe.py"), str(plug), str(tmp_path / "missing.glb"),
                           str(broken), str(tmp_path / "third.glb")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "LISTED_RELEASED": str(released),
                                                                        "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])

    assert "listed" in r["kinds"] and "objaverse" in r["kinds"]
    # a source not in use leaves the hash of every other pipeline as it was
    assert r["demo_hash"] == SHIPPED_HASHES["demo"]
    assert r["hash_batch"] == r["hash"] != r["hash_weight"]
    assert "unknown key 'source.listed.nope'" in r["source.listed.nope=1"]
    assert "key 'source.listed.weight': must be > 0" in r["source.listed.weight=0"]
    # source.limit cuts the source's order; the source's own rejections are all kept
    assert r["tasks"] == [["missing", "listed", "cc0"], ["broken", "listed", "cc0"]]
    assert r["rejected"] == [["dropped_one", "listed_rule"]]
    # a fetch that raises is the asset's download_failed, and nothing is released; a fetched file is
    # rendered (here it is not a GLB: the render's error) and released once
    assert ["download", "error", "download_failed"] in r["rows"]["missing"]
    assert ["asset", "error", "download_failed"] in r["rows"]["missing"]
    render_rows = [x for x in r["rows"]["broken"] if x[0] == "render"]
    assert render_rows and render_rows[0][1] == "error", r["rows"]["broken"]
    assert [json.loads(ln) for ln in released.read_text().splitlines()] == [["broken", str(broken)]]
    assert "Source rules (listed):" in r["settings"] and "source.listed.weight" in r["settings"]
    assert "listed-tag" in r["front"]


def test_uids_go_to_the_pipelines_source_and_a_source_without_a_uid_list_refuses_them(tmp_path):
    uids = tmp_path / "uids.txt"
    uids.write_text("abc\n")
    proc = subprocess.run([sys.executable, "-m", "driveanymesh", "run", "demo", "--out",
                           str(tmp_path / "out"), "--uids", str(uids)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "a demo source takes no uid list" in proc.stderr
    assert not (tmp_path / "out").exists()
