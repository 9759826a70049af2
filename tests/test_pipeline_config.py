import pytest

from curation.pipeline_config import PipelineConfigError, available, load_pipeline


def write(tmp_path, text):
    p = tmp_path / "pipelines.yaml"
    p.write_text(text)
    return str(p)


def test_shipped_pipelines_load_with_paper_settings():
    assert "demo" in available()
    demo = load_pipeline("demo")
    assert (demo.keyframes.count, demo.keyframes.max_spacing) == (30, 3)
    assert (demo.render.views, demo.render.resolution) == (4, 256)
    assert demo.source.kind == "demo"
    for name in available():
        load_pipeline(name)


def test_missing_pipeline_names_file_and_pipeline(tmp_path):
    path = write(tmp_path, "demo: {seed: 1}\n")
    with pytest.raises(PipelineConfigError, match=r"pipelines\.yaml: no pipeline named 'nope'"):
        load_pipeline("nope", path)


def test_unknown_key_names_file_pipeline_and_key(tmp_path):
    path = write(tmp_path, "p1:\n  render:\n    samplez: 4\n")
    with pytest.raises(PipelineConfigError) as err:
        load_pipeline("p1", path)
    msg = str(err.value)
    assert path in msg and "'p1'" in msg and "'render.samplez'" in msg


@pytest.mark.parametrize("body, key", [
    ("render:\n    samples: many", "render.samples"),
    ("keyframes:\n    count: 2.5", "keyframes.count"),
    ("render:\n    denoise: 1", "render.denoise"),
    ("render:\n    light:\n      hdris: studio.exr", "render.light.hdris"),
    ("seed: [1]", "seed"),
])
def test_wrong_type_names_the_key(tmp_path, body, key):
    path = write(tmp_path, "p2:\n  " + body + "\n")
    with pytest.raises(PipelineConfigError, match=rf"pipeline 'p2': key '{key}.*': expected"):
        load_pipeline("p2", path)


def test_bad_values_are_rejected(tmp_path):
    path = write(tmp_path, "p3:\n  render:\n    engine: povray\n")
    with pytest.raises(PipelineConfigError, match="render.engine"):
        load_pipeline("p3", path)
    path = write(tmp_path, "p4:\n  keyframes:\n    short_clip: stretch\n")
    with pytest.raises(PipelineConfigError, match="short_clip"):
        load_pipeline("p4", path)


def test_config_hash_follows_settings(tmp_path):
    a = load_pipeline("p", write(tmp_path, "p: {render: {samples: 8}}\n"))
    b = load_pipeline("p", write(tmp_path, "p: {render: {samples: 9}}\n"))
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == load_pipeline("p", write(tmp_path, "p: {render: {samples: 8}}\n")).config_hash()


def test_limit_takes_the_first_assets_of_any_source_and_keeps_the_hash(tmp_path):
    from curation.driver import tasks_for
    from dataset.storage import Store

    for name in ("c.glb", "a.glb", "b.glb"):
        (tmp_path / name).write_bytes(b"")
    pipe = load_pipeline("demo", overrides=["source.kind=local", f"source.path={tmp_path}"])
    limited = load_pipeline("demo", overrides=["source.kind=local", f"source.path={tmp_path}", "source.limit=2"])
    out = Store(str(tmp_path / "out"))
    assert [t.uid for t in tasks_for(pipe, out)[0]] == ["a", "b", "c"]
    assert [t.uid for t in tasks_for(limited, out)[0]] == ["a", "b"]
    assert limited.config_hash() == pipe.config_hash()  # a trial grows into the full run


def test_both_config_files_extend_and_take_overrides_checked_alike(tmp_path):
    path = write(tmp_path, "base: {seed: 5, render: {samples: 4, resolution: 64}}\n"
                           "child: {extends: base, render: {resolution: 32}}\n"
                           "loop_a: {extends: loop_b}\nloop_b: {extends: loop_a}\n")
    child = load_pipeline("child", path, overrides=["render.fov_deg=30"])
    assert (child.seed, child.render.samples, child.render.resolution, child.render.fov_deg) == (5, 4, 32, 30.0)
    with pytest.raises(PipelineConfigError, match="in a cycle"):
        load_pipeline("loop_a", path)
    with pytest.raises(PipelineConfigError, match=r"pipeline 'child': key 'render.samples': expected int"):
        load_pipeline("child", path, overrides=["render.samples=true"])

    from train.config import TrainConfigError, load_train_config
    cfg = load_train_config("vae-tiny", "vae", ["optim.lr=3e-4", "vae.width=64"])  # 3e-4: YAML 1.1 says str
    assert cfg.optim.lr == 3e-4 and cfg.vae.width == 64
    with pytest.raises(TrainConfigError, match=r"unknown key 'optim.lrr' \(allowed here: beta1"):
        load_train_config("vae-tiny", "vae", ["optim.lrr=1"])
    with pytest.raises(TrainConfigError, match=r"key 'vae.width': expected int, got float 1.5"):
        load_train_config("vae-tiny", "vae", ["vae.width=1.5"])
