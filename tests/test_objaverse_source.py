"""The Objaverse source through the real objaverse package, against tiny offline mirrors.

Each mirror gets one subprocess (HOME pointed at it, network refused) that runs every call the tests
check and returns the results as JSON; the tests then assert on those.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curation.objaverse_source import ObjaverseSettings, check, select, slugify
from tests.objaverse_mirror import annotation, make_uid, run_in_mirror, tiny_glb, write_mirror

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
        import curation.objaverse_source as src
        result["objaverse_imported_by_module"] = "objaverse" in sys.modules
        sel = src.select(src.ObjaverseSettings())
        result["selection"] = dataclasses.asdict(sel)
        result["fetched"] = {{u: src.fetch(u) for u in sel.uids}}
        result["network_before_failures"] = list(NETWORK)
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
    assert U["not_animated"] in res["missing_glb"] and "download failed" in res["missing_glb"]
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
        import dataclasses
        from curation.objaverse_source import ObjaverseSettings as S, select
        result["seed0"] = select(S()).uids
        result["seed0_again"] = select(S()).uids
        result["seed1"] = select(S(shuffle_seed=1)).uids
        import curation.objaverse_source as src
        src.ANNOTATION_CHUNK = 5  # several load_annotations calls, each spanning both metadata files
        sel = select(S())
        result["chunked"], result["chunked_counts"] = sel.uids, sel.counts
        src.ANNOTATION_CHUNK = 50_000
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
    """)
    assert run["network"] == []
    return {"subset_expected": subset, "no_record": no_record, "bad_file_path": str(bad_file), **run["result"]}


def test_seeded_shuffle_is_stable_and_seed_dependent(order_run):
    assert sorted(order_run["seed0"]) == sorted(MANY)
    assert order_run["seed0"] == order_run["seed0_again"]
    assert order_run["seed1"] != order_run["seed0"] and sorted(order_run["seed1"]) == sorted(MANY)
    expected = [sorted(MANY)[i] for i in np.random.default_rng(0).permutation(N_MANY)]
    assert order_run["seed0"] == expected


def test_annotations_read_in_chunks_give_the_same_selection(order_run):
    assert order_run["chunked"] == order_run["seed0"]
    assert order_run["chunked_counts"]["passed"] == N_MANY and order_run["chunked_counts"]["no_annotation"] == 1


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
