"""The Objaverse source through the real objaverse package, against tiny offline mirrors.

Each mirror gets one subprocess (HOME pointed at it, network refused) that runs every call the tests
check and returns the results as JSON; the tests then assert on those. The download tests let that
process reach 127.0.0.1 only, where a Loopback server plays huggingface.co: failing, stalling,
cutting a body short, or held mid-body while the process is killed.
"""
from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from curation.sources.objaverse import ObjaverseSettings, check, select, slugify
from tests.objaverse_mirror import (Loopback, annotation, make_uid, run_in_mirror, start_in_mirror, tiny_glb,
                                    write_mirror)

U = {name: make_uid(name) for name in (
    "not_animated", "bad_license", "many_vertices", "many_faces", "scene_category", "scene_tag",
    "pass_a", "pass_b")}

RECORDS = {
    U["not_animated"]: annotation(U["not_animated"], "Static chair", animation_count=0),
    U["bad_license"]: annotation(U["bad_license"], "NC dragon", license="by-nc"),
    U["many_vertices"]: annotation(U["many_vertices"], "Dense statue", vertex_count=600_000, face_count=400_000),
    U["many_faces"]: annotation(U["many_faces"], "Dense whale", vertex_count=300_000, face_count=700_000),
    U["scene_category"]: annotation(U["scene_category"], "Animated town", categories=("Places & travel",)),
    U["scene_tag"]: annotation(U["scene_tag"], "Scanned cat", tags=("cat", "photogrammetry")),
    U["pass_a"]: annotation(U["pass_a"], "Walking fox", license="by", categories=("Animals & pets",),
                            tags=("fox", "animated")),
    U["pass_b"]: annotation(U["pass_b"], "Robot", license="cc0", animation_count=3, tags=("robot",)),
}


@pytest.fixture(scope="module")
def rules_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home_rules")
    glb_dir = tmp_path_factory.mktemp("glbs_rules")
    glbs = {U[n]: tiny_glb(glb_dir / f"{n}.glb", n) for n in ("pass_a", "pass_b")}
    write_mirror(home, RECORDS, glbs)
    run = run_in_mirror(home, f"""
        import dataclasses
        import curation.sources.objaverse as src
        result["objaverse_imported_by_module"] = "objaverse" in sys.modules
        sel = src.select(src.ObjaverseSettings())
        result["selection"] = dataclasses.asdict(sel)
        result["fetched"] = {{u: src.fetch(u) for u in sel.uids}}
        result["network_before_failures"] = list(NETWORK)
        src.RETRY_BACKOFF_S = 0.001  # the refused downloads below are retried: no need to wait
        import objaverse
        result["base_path"] = objaverse.BASE_PATH
        for key, uid in [("missing_glb", {U["not_animated"]!r}), ("unknown", "0" * 32)]:
            try:
                src.fetch(uid)
            except src.FetchError as exc:
                result[key] = str(exc)
    """)
    return {"home": home, "glbs": glbs, **run}


def test_mirror_is_served_from_the_cache_without_network(rules_run):
    res = rules_run["result"]
    assert res["base_path"] == str(rules_run["home"] / ".objaverse")
    assert res["network_before_failures"] == []
    assert not res["objaverse_imported_by_module"]  # importing the module does not freeze HOME


def test_select_keeps_exactly_the_passing_assets(rules_run):
    sel = rules_run["result"]["selection"]
    assert sorted(sel["uids"]) == sorted([U["pass_a"], U["pass_b"]])
    info = sel["info"][U["pass_b"]]
    assert (info["license"], info["animationCount"], info["name"]) == ("cc0", 3, "Robot")
    assert info["tags"] == ["robot"] and info["author"] == "Test Author"
    assert sel["info"][U["pass_a"]]["categories"] == ["animals-pets"]
    assert set(sel["info"]) == set(sel["uids"])


def test_each_rejected_asset_names_its_rule_and_the_values_it_read(rules_run):
    rows = {r["uid"]: r for r in rules_run["result"]["selection"]["rejected"]}
    assert U["not_animated"] not in rows  # counted only: most of Objaverse
    expected = {
        "bad_license": ("license", {"license": "by-nc", "allowed": ["by", "by-sa", "cc0"]}),
        "many_vertices": ("too_many_vertices", {"vertexCount": 600_000, "max_vertices": 500_000}),
        "many_faces": ("too_many_faces", {"faceCount": 700_000, "max_faces": 500_000}),
        "scene_category": ("scene_category", {"categories": ["places-travel"], "matched": ["places-travel"]}),
        "scene_tag": ("scene_tag", {"tags": ["cat", "photogrammetry"], "matched": ["photogrammetry"]}),
    }
    assert set(rows) == {U[n] for n in expected}
    for name, (rule, values) in expected.items():
        r = rows[U[name]]
        assert (r["stage"], r["status"], r["rule"]) == ("metadata", "rejected", rule), name
        assert r["values"] == values, name
        assert r["reasons"] and r["reasons"][0], name


def test_counts_per_rule(rules_run):
    assert rules_run["result"]["selection"]["counts"] == {
        "considered": 8, "no_annotation": 0, "not_animated": 1, "license": 1, "too_many_vertices": 1,
        "too_many_faces": 1, "scene_category": 1, "scene_tag": 1, "passed": 2, "selected": 2}


def test_fetch_returns_the_mirrored_glb(rules_run):
    fetched = rules_run["result"]["fetched"]
    assert set(fetched) == {U["pass_a"], U["pass_b"]}
    for uid, path in fetched.items():
        assert Path(path).read_bytes() == Path(rules_run["glbs"][uid]).read_bytes()
        assert Path(path).is_relative_to(rules_run["home"] / ".objaverse" / "hf-objaverse-v1" / "glbs")


def test_fetch_errors_name_the_uid(rules_run):
    res = rules_run["result"]
    # A uid the mirror lists without its GLB makes the package download it: refused here, which also
    # shows that the runs above, which recorded no access, were served from the cache.
    assert U["not_animated"] in res["missing_glb"] and "download failed after 4 attempt(s)" in res["missing_glb"]
    assert "https://huggingface.co/datasets/allenai/objaverse/resolve/main/glbs/000-000/" in res["missing_glb"]
    assert any("huggingface.co" in a for a in rules_run["network"])
    assert "0" * 32 in res["unknown"] and "not in Objaverse 1.0" in res["unknown"]


N_MANY = 12
MANY = [make_uid(f"many{i}") for i in range(N_MANY)]


@pytest.fixture(scope="module")
def order_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home_order")
    no_record = make_uid("glb without annotation")
    records = {u: annotation(u) for u in MANY}
    dirs = {u: "000-000" if i % 2 else "000-001" for i, u in enumerate(MANY)}  # two metadata files
    glb = tiny_glb(tmp_path_factory.mktemp("glbs_order") / "x.glb", "x")
    write_mirror(home, records, {no_record: glb}, dirs)
    subset = [MANY[0], MANY[1], MANY[5], MANY[8]]
    subset_file = home / "subset.txt"
    subset_file.write_text("# a partial rebuild\n" + "\n".join(subset) + "\n\n")
    bad_file = home / "bad.txt"
    bad_file.write_text(MANY[0] + "\nnot-a-uid\n")
    run = run_in_mirror(home, f"""
        import dataclasses, gzip
        opened, gzip_open = [], gzip.open
        def counting_open(filename, *args, **kwargs):  # every index file read goes through gzip.open
            opened.append(str(filename))
            return gzip_open(filename, *args, **kwargs)
        gzip.open = counting_open
        from curation.sources.objaverse import ObjaverseSettings as S, select
        result["seed0"] = select(S()).uids
        result["opened_by_one_select"] = list(opened)
        result["seed0_again"] = select(S()).uids
        result["seed1"] = select(S(shuffle_seed=1)).uids
        sel = select(S())
        result["again_counts"] = sel.counts
        sel = select(S(limit=5))
        result["limit5"] = sel.uids
        result["limit5_counts"] = sel.counts
        result["limit5_info"] = sorted(sel.info)
        result["no_record_rows"] = [r for r in sel.rejected]
        sel = select(S(uids_file={str(subset_file)!r}))
        result["subset"] = sel.uids
        result["subset_counts"] = sel.counts
        try:
            select(S(uids_file={str(bad_file)!r}))
        except ValueError as exc:
            result["bad_file"] = str(exc)
        result["opened_by_all"] = list(opened)
    """)
    assert run["network"] == []
    return {"subset_expected": subset, "no_record": no_record, "bad_file_path": str(bad_file), **run["result"]}


def test_seeded_shuffle_is_stable_and_seed_dependent(order_run):
    assert sorted(order_run["seed0"]) == sorted(MANY)
    assert order_run["seed0"] == order_run["seed0_again"]
    assert order_run["seed1"] != order_run["seed0"] and sorted(order_run["seed1"]) == sorted(MANY)
    expected = [sorted(MANY)[i] for i in np.random.default_rng(0).permutation(N_MANY)]
    assert order_run["seed0"] == expected


def test_each_metadata_file_is_read_once_and_the_path_table_once_per_process(order_run):
    # The uids alternate between the two files in object-paths order: grouped by file, each is read once.
    names = sorted(Path(p).name for p in order_run["opened_by_one_select"])
    assert names == ["000-000.json.gz", "000-001.json.gz", "object-paths.json.gz"]
    # Six selects in one process: object-paths.json.gz parsed by the first only.
    assert sum(Path(p).name == "object-paths.json.gz" for p in order_run["opened_by_all"]) == 1
    assert order_run["again_counts"]["passed"] == N_MANY and order_run["again_counts"]["no_annotation"] == 1


def test_limit_is_a_prefix_of_the_full_order(order_run):
    assert order_run["limit5"] == order_run["seed0"][:5]
    assert order_run["limit5_info"] == sorted(order_run["limit5"])
    counts = order_run["limit5_counts"]
    assert (counts["considered"], counts["passed"], counts["selected"]) == (N_MANY + 1, N_MANY, 5)


def test_uid_without_annotation_is_a_recorded_rejection(order_run):
    rows = order_run["no_record_rows"]
    assert [(r["uid"], r["rule"]) for r in rows] == [(order_run["no_record"], "no_annotation")]
    assert order_run["limit5_counts"]["no_annotation"] == 1


def test_uids_file_restricts_the_candidates(order_run):
    assert sorted(order_run["subset"]) == sorted(order_run["subset_expected"])
    assert order_run["subset_counts"]["considered"] == 4 and order_run["subset_counts"]["passed"] == 4


def test_unknown_uid_in_uids_file_names_the_file_and_uid(order_run):
    msg = order_run["bad_file"]
    assert "not-a-uid" in msg and order_run["bad_file_path"] in msg and MANY[0] not in msg


# Downloads, over loopback: a Loopback server plays huggingface.co ($DRIVEANYMESH_OBJAVERSE_URL) and
# answers as each test scripts; the package's cache is a mirror whose object-paths lists the asset
# without its GLB. time.sleep is replaced by a recorder, so the backoff is checked without waiting.

_RECORD_SLEEPS = """
import os, time
import curation.sources.objaverse as src
sleeps = []
time.sleep = sleeps.append
"""


def _recording_sleeps(code: str) -> str:
    return _RECORD_SLEEPS + textwrap.dedent(code)


def _glb_home(tmp_path, name: str, cached: tuple[str, ...] = ()):
    """A mirror listing `name` (no GLB) and `cached` (with GLBs); returns home, uid, GLB bytes, URL path, root."""
    uid = make_uid(name)
    glb = tiny_glb(tmp_path / "src" / f"{name}.glb", name)
    home = tmp_path / "home"
    records = {make_uid(c): annotation(make_uid(c)) for c in (name, *cached)}
    root = write_mirror(home, records, {make_uid(c): tiny_glb(tmp_path / "src" / f"{c}.glb", c) for c in cached})
    return home, uid, glb.read_bytes(), f"/glbs/000-000/{uid}.glb", root


def test_download_is_retried_with_backoff_after_a_503_and_a_dropped_connection(tmp_path):
    home, uid, glb, url_path, root = _glb_home(tmp_path, "retried")
    with Loopback({url_path: [("status", 503), ("drop",), ("ok", glb)]}) as server:
        run = run_in_mirror(home, _recording_sleeps(f"""
            path = src.fetch({uid!r}, src.ObjaverseSettings(download_timeout_s=5, download_retries=3))
            result["path"], result["bytes"], result["sleeps"] = path, open(path, "rb").read().hex(), sleeps
        """), base_url=server.url, loopback=True, timeout=60)
    res = run["result"]
    assert server.requests == [url_path] * 3
    assert res["sleeps"] == [1.0, 2.0]  # RETRY_BACKOFF_S, then doubled
    assert res["path"] == str(root / "glbs" / "000-000" / f"{uid}.glb")
    assert bytes.fromhex(res["bytes"]) == glb
    assert sorted(p.name for p in (root / "glbs" / "000-000").iterdir()) == [f"{uid}.glb"]  # no temporary left


def test_a_stalled_connection_fails_after_the_timeout(tmp_path):
    home, uid, glb, url_path, root = _glb_home(tmp_path, "stalled")
    with Loopback({url_path: [("stall",)]}) as server:  # accepts, reads the request, never answers
        run = run_in_mirror(home, _recording_sleeps(f"""
            started = time.monotonic()
            try:
                src.fetch({uid!r}, src.ObjaverseSettings(download_timeout_s=1, download_retries=1))
            except src.FetchError as exc:
                result["error"] = str(exc)
            result["elapsed"] = time.monotonic() - started
        """), base_url=server.url, loopback=True, timeout=20)  # without a timeout this run never ends
        assert server.held.is_set()
    res = run["result"]
    assert uid in res["error"] and "after 2 attempt(s)" in res["error"] and "timed out" in res["error"]
    assert server.requests == [url_path] * 2
    assert 2.0 <= res["elapsed"] < 10  # two attempts of 1 s each, the backoff not slept here
    assert not (root / "glbs" / "000-000").exists() or not any((root / "glbs" / "000-000").iterdir())


def test_a_truncated_download_fails_and_leaves_no_file(tmp_path):
    home, uid, glb, url_path, root = _glb_home(tmp_path, "truncated", cached=("missing",))
    missing = f"/glbs/000-000/{make_uid('missing')}.glb"
    with Loopback({url_path: [("short", glb[:40], len(glb))], missing: [("status", 404)]}) as server:
        (root / "glbs" / "000-000" / f"{make_uid('missing')}.glb").unlink()  # listed, not cached, not served
        run = run_in_mirror(home, _recording_sleeps(f"""
            for key, uid in [("short", {uid!r}), ("not_found", {make_uid("missing")!r})]:
                try:
                    src.fetch(uid, src.ObjaverseSettings(download_timeout_s=5, download_retries=1))
                except src.FetchError as exc:
                    result[key] = str(exc)
        """), base_url=server.url, loopback=True, timeout=60)
    res = run["result"]
    assert uid in res["short"] and "after 2 attempt(s)" in res["short"]
    assert f"TruncatedDownload: got 40 bytes, the server announced Content-Length {len(glb)}" in res["short"]
    assert server.requests.count(url_path) == 2
    assert list((root / "glbs" / "000-000").iterdir()) == []  # neither the final name nor a temporary
    # A 404 is not retried: the file is not there.
    assert "after 1 attempt(s)" in res["not_found"] and "404" in res["not_found"]
    assert server.requests.count(missing) == 1


def test_a_killed_index_download_leaves_no_truncated_file(tmp_path):
    home, uid, glb, url_path, root = _glb_home(tmp_path, "killed")
    table_file = root / "object-paths.json.gz"
    table = table_file.read_bytes()
    table_file.unlink()  # a first run: the index is not there yet
    code = f"""
        import curation.sources.objaverse as src
        result["path"] = src.fetch({uid!r}, src.ObjaverseSettings(download_timeout_s=30))
    """
    replies = {"/object-paths.json.gz": [("partial", table[:len(table) // 2], len(table)), ("ok", table)],
               url_path: [("ok", glb)]}
    with Loopback(replies) as server:
        proc = start_in_mirror(home, code, base_url=server.url, loopback=True)
        try:
            assert server.held.wait(30), "the download never started"
            deadline = time.monotonic() + 30
            while not list(root.glob("object-paths.json.gz*")):  # the client has opened its file
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.01)
        finally:
            proc.kill()  # mid-download, the body half sent
            proc.communicate()
        assert not table_file.exists()
        run = run_in_mirror(home, code, base_url=server.url, loopback=True, timeout=60)  # a fresh process
    assert table_file.read_bytes() == table
    assert run["result"]["path"] == str(root / "glbs" / "000-000" / f"{uid}.glb")


def test_path_table_parsed_once_per_process_and_evict_deletes_only_its_downloads(tmp_path):
    cached = ("c0", "c1", "c2")
    home, uid, glb, url_path, root = _glb_home(tmp_path, "evicted", cached=cached)
    cached_path = str(root / "glbs" / "000-000" / f"{make_uid('c0')}.glb")
    outside = tmp_path / "outside.glb"
    outside.write_bytes(b"keep")
    with Loopback({url_path: [("ok", glb)]}) as server:
        run = run_in_mirror(home, f"""
            import gzip, os
            opened, gzip_open = [], gzip.open
            def counting_open(filename, *args, **kwargs):
                opened.append(str(filename))
                return gzip_open(filename, *args, **kwargs)
            gzip.open = counting_open
            import curation.sources.objaverse as src
            s = src.ObjaverseSettings(download_timeout_s=5)
            # with the path a selection gives each task: the table is not needed at all
            given = src.fetch({make_uid("c0")!r}, s, "glbs/000-000/{make_uid("c0")}.glb")
            result["parses_with_path"] = sum(p.endswith("object-paths.json.gz") for p in opened)
            fetched = [src.fetch(u, s) for _ in range(20) for u in {[make_uid(c) for c in cached]!r}]
            downloaded = src.fetch({uid!r}, s)
            result["table_parses"] = sum(p.endswith("object-paths.json.gz") for p in opened)
            result["evict_cached"] = src.evict({cached_path!r})
            result["evict_downloaded"] = src.evict(downloaded)
            result["downloaded_exists"] = os.path.exists(downloaded)
            result["evict_again"] = src.evict(downloaded)
            for key, path in [("outside", {str(outside)!r}), ("index", {str(root / "object-paths.json.gz")!r})]:
                try:
                    src.evict(path)
                except ValueError as exc:
                    result[key] = str(exc)
        """, base_url=server.url, loopback=True, timeout=60)
    res = run["result"]
    assert res["parses_with_path"] == 0 and res["table_parses"] == 1  # 61 fetches
    assert res["evict_downloaded"] is True and not res["downloaded_exists"]
    assert res["evict_again"] is False
    assert res["evict_cached"] is False and Path(cached_path).exists()  # a mirror's file: not ours to delete
    assert "not inside the objaverse GLB cache" in res["outside"] and outside.read_bytes() == b"keep"
    assert "not inside" in res["index"] and (root / "object-paths.json.gz").exists()


def test_download_settings_are_checked():
    with pytest.raises(ValueError, match="download_timeout_s"):
        ObjaverseSettings(download_timeout_s=0).validate()
    with pytest.raises(ValueError, match="download_retries"):
        ObjaverseSettings(download_retries=-1).validate()


# In-process: the rules themselves, and settings checks that need no package.

def test_rule_order_and_missing_counts():
    s = ObjaverseSettings()
    rec = annotation("u" * 32, license="by-nc", animation_count=0)
    assert check(rec, s)[0] == "not_animated"  # first failing rule decides
    rec = annotation("u" * 32, vertex_count=None, face_count=None)
    assert check(rec, s) is None  # counts Sketchfab did not report are left to the render stage
    rec = annotation("u" * 32, categories=("Cultural Heritage & History",))
    assert check(rec, s)[0] == "scene_category"
    rec["categories"] = [{"name": "Whatever", "slug": "architecture"}]  # a slug, where given, wins
    assert check(rec, s)[2]["matched"] == ["architecture"]
    assert check(annotation("u" * 32, tags=("3dscan",)), s)[0] == "scene_tag"
    assert slugify("Places & travel") == "places-travel"


def test_bad_settings_are_rejected_before_touching_objaverse():
    with pytest.raises(ValueError, match="source.objaverse.limit"):
        select(ObjaverseSettings(limit=-1))
