"""`driveanymesh eval` on the held-out shards with tiny trained models: a per-clip, per-frame CSV, a
table in Table 1's layout that says which metrics it did not measure, and a contact sheet."""
import csv
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_eval_writes_the_table_the_csv_and_the_contact_sheet(clip_shards, trained_vae, trained_diffusion, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "driveanymesh", "eval", "--shards", *clip_shards["test"],
                           "--vae", trained_vae, "--diffusion", trained_diffusion, "--out", str(out),
                           "--eval-points", "2000"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "per_clip.csv")))
    assert len(rows) == 6 * len({r["key"] for r in rows}) > 0  # every keyframe of every test clip
    for r in rows:
        for k in ("reconstruction_chamfer", "generation_chamfer", "reconstruction_l2", "generation_l2"):
            assert 0 <= float(r[k]) < 1
    table = (out / "table.md").read_text()
    assert "Ours, VAE reconstruction" in table and "Ours, generation" in table and "not measured" in table
    assert "Geo. CD" in proc.stdout
    assert (out / "contact_sheet.png").stat().st_size > 10_000
