"""A static HTML page for a run's audit: counts per rule, contact sheets of accepted clips and of
rejected clips per rule, and a histogram of each filter value with its threshold drawn.

A sheet shows a seeded sample of at most `SHEET_SAMPLES` clips per rule (the same clips every time
for the same audit), so the page stays the same size for 10 clips or 50,000; the full list of any
rule is a query on audit.parquet away."""
from __future__ import annotations

import html
import io
import json
import re
from collections import Counter, defaultdict

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from curation.audit import AuditLog  # noqa: E402
from curation.clip_processing import thumb_path  # noqa: E402
from dataset.storage import Store  # noqa: E402

SHEET_SAMPLES = 48  # clips shown per contact sheet

# (audit value, its threshold from the run's resolved pipeline, what it is)
HISTOGRAMS = [
    ("scene_components", lambda p: p["filters"]["scene_min_components"],
     "welded parts (scene_like: at least this many ...)"),
    ("scene_isolated", lambda p: p["filters"]["scene_min_isolated"],
     "share of parts standing apart (scene_like: at least this ...)"),
    ("scene_moving", lambda p: p["filters"]["scene_max_moving"],
     "share of parts moving (... and fewer than this)"),
    ("min_second_extent", lambda p: p["filters"]["degenerate_min_extent"],
     "second bounding-box side, smallest keyframe (degenerate below)"),
    ("bounds_max_abs", lambda p: p["render"]["volume_size"] / 2 + p["filters"]["bounds_margin"],
     "largest |coordinate| over keyframes (bounds: rejected above)"),
    ("ssim_change", lambda p: p["filters"]["ssim_min_change"], "1 - min SSIM vs frame 0, largest view (static below)"),
    ("mean_displacement_max", lambda p: p["filters"]["min_mean_displacement"],
     "mean vertex displacement from frame 0 (static below)"),
    ("max_jump_per_frame", lambda p: p["filters"]["max_jump"],
     "largest per-vertex step per source frame (atypical above)"),
]
REPORT_VALUES = {value for value, _, _ in HISTOGRAMS}  # the audit values the report reads


def write_report(out: Store | str, rows: list[dict] | None = None) -> str:
    """Writes `report/index.html` and its histograms to the run's store; returns the page's URL."""
    store = out if isinstance(out, Store) else Store(out)
    rows = AuditLog(store).rows() if rows is None else rows
    run = json.loads(store.read("run.json"))
    clips = [r for r in rows if r["stage"] == "filter"]
    parts = [f"<h1>Audit: {html.escape(run['pipeline']['name'])}</h1>",
             f"<p>config {run['config_hash']} &middot; {len({r['uid'] for r in rows})} assets &middot; "
             f"{len(clips)} clips</p>", _counts_table(rows)]
    parts.append("<h2>Filter values</h2><div class='hists'>")
    for value, threshold, title in HISTOGRAMS:
        name = _histogram(clips, value, threshold(run["pipeline"]), title, store)
        if name:
            parts.append(f"<img src='{name}' alt='{html.escape(value)}'>")
    parts.append("</div>")
    accepted = [r for r in clips if r["status"] == "accepted"]
    parts.append(_sheet("Accepted clips", accepted, store))
    by_rule = defaultdict(list)
    for r in clips:
        if r["status"] != "accepted":
            by_rule[r.get("rule") or "?"].append(r)
    for rule, rs in sorted(by_rule.items()):
        parts.append(_sheet(f"Rejected by {rule}", rs, store))
    overridden = [r for r in clips if r.get("override") and r["override"].get("rule_status") != r["status"]]
    if overridden:  # where a person decided otherwise than the rules (overrides.jsonl)
        parts.append(_sheet("Overridden by a person", overridden, store))
    parts.append(_failures(rows))
    store.write("report/index.html", _PAGE.format(body="\n".join(parts)).encode())
    return store.url("report/index.html")


def _counts_table(rows: list[dict]) -> str:
    counts = Counter((r["stage"], r["status"], r.get("rule") or "") for r in rows if r["stage"] != "asset")
    body = "".join(f"<tr><td>{s}</td><td>{st}</td><td>{html.escape(rule)}</td><td>{n}</td></tr>"
                   for (s, st, rule), n in sorted(counts.items()))
    return f"<table><tr><th>stage</th><th>status</th><th>rule</th><th>count</th></tr>{body}</table>"


def _histogram(clips: list[dict], value: str, threshold, title: str, store: Store) -> str | None:
    acc = [r["values"][value] for r in clips if r["status"] == "accepted" and value in r.get("values", {})]
    rej = [r["values"][value] for r in clips if r["status"] != "accepted" and value in r.get("values", {})]
    if not acc and not rej:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 2.6), dpi=100)
    ax.hist([acc, rej], bins=20, stacked=True, color=["#4c9a5b", "#c4553b"], label=["accepted", "rejected"])
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold:g}")
    ax.set_title(title, fontsize=7)
    ax.set_xlabel(value, fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    name = f"hist_{value}.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    store.write(f"report/{name}", buf.getvalue())
    return name


def flip(status: str) -> str:
    """The override that reverses a clip's decision."""
    return "reject" if status == "accepted" else "accept"


def write_review(out: Store | str, rule: str, rows: list[dict] | None = None) -> str:
    """`report/review-<rule>.html`: every clip the rule decided (`accepted`: the accepted clips), each
    with the override line that reverses it, to copy into a file, give a reason, and apply with
    `audit OUT override --from FILE`. Returns the page's URL."""
    store = out if isinstance(out, Store) else Store(out)
    rows = AuditLog(store).rows() if rows is None else rows
    clips = [r for r in rows if r["stage"] == "filter" and
             (r["status"] == "accepted" if rule == "accepted" else r["status"] != "accepted" and r.get("rule") == rule)]
    if not clips:
        raise ValueError(f"no clips decided by {rule!r} in the audit of {store.root}")
    body = ("<h1>Review: " + html.escape(rule) + "</h1><p>Copy the lines of the clips to reverse into a file, write "
            "each one's reason, then run <code>driveanymesh audit OUT override --from FILE</code>; the next run "
            "applies them.</p>" + _sheet(f"Decided by {rule}", clips, store, sample=False, review=True))
    rel = f"report/review-{re.sub(r'[^A-Za-z0-9_.-]', '_', rule)}.html"
    store.write(rel, _PAGE.format(body=body).encode())
    return store.url(rel)


def _sheet(title: str, rows: list[dict], store: Store, sample: bool = True, review: bool = False) -> str:
    keyed = sorted(rows, key=lambda r: r.get("key") or "")
    if sample and len(keyed) > SHEET_SAMPLES:  # seeded: the same audit shows the same clips
        import random
        keyed = sorted(random.Random(0).sample(keyed, SHEET_SAMPLES), key=lambda r: r.get("key") or "")
        title = f"{title} ({len(rows)}; a sample of {SHEET_SAMPLES})"
    else:
        title = f"{title} ({len(rows)})"
    cells = []
    for r in keyed:
        key = r.get("key") or f"{r['uid']}_{r.get('animation_index')}"
        rel = thumb_path(key)
        img = (f"<img src='../{rel}'>" if store.exists(rel) else "<div class='missing'>no thumbnail</div>")
        tip = html.escape("; ".join(r.get("reasons") or []) or f"{r.get('label', '')} {r.get('split', '')}")
        o = r.get("override")
        said = (f"<br>{html.escape(o.get('decision', ''))} by {html.escape(o.get('by') or '?')}: "
                f"{html.escape(o.get('reason', ''))} (rules: {html.escape(str(o.get('rule_status')))})") if o else ""
        line = (f"<br><code>{html.escape(json.dumps({'key': key, 'decision': flip(r['status']), 'reason': ''}))}"
                "</code>") if review else ""
        cells.append(f"<figure title='{tip}'>{img}<figcaption>{html.escape(key)}<br>"
                     f"{html.escape(str(r.get('animation') or ''))}{said}{line}</figcaption></figure>")
    return f"<h2>{html.escape(title)}</h2><div class='sheet'>{''.join(cells)}</div>"


def _failures(rows: list[dict]) -> str:
    bad = [r for r in rows if r["stage"] in ("metadata", "download", "render") and r["status"] != "accepted"]
    if not bad:
        return ""
    groups = defaultdict(list)
    for r in sorted(bad, key=lambda r: (r["stage"], r.get("rule") or "", r["uid"])):
        groups[(r["stage"], r.get("rule") or "")].append(r)
    body = []
    for (stage, rule), rs in groups.items():  # at most SHEET_SAMPLES rows per rule: 26k metadata rejections stay a page
        body += [f"<tr><td>{html.escape(r['uid'])}</td><td>{stage}</td><td>{r['status']}</td>"
                 f"<td>{html.escape(rule)}</td><td>{html.escape('; '.join(r.get('reasons') or []))[:300]}</td></tr>"
                 for r in rs[:SHEET_SAMPLES]]
        if len(rs) > SHEET_SAMPLES:
            body.append(f"<tr><td colspan='5'>... and {len(rs) - SHEET_SAMPLES} more {stage} / {html.escape(rule)} "
                        f"(all of them: audit.parquet, or `driveanymesh audit OUT summary`)</td></tr>")
    return (f"<h2>Assets or animations without clips ({len(bad)})</h2><table><tr><th>uid</th><th>stage</th>"
            f"<th>status</th><th>rule</th><th>reason</th></tr>{''.join(body)}</table>")


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>DriveAnyMesh audit</title><style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
.hists img {{ margin: 4px; border: 1px solid #eee; }}
.sheet {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; font-size: 11px; text-align: center; }}
figure img {{ border: 1px solid #ddd; display: block; }}
.missing {{ width: 256px; height: 64px; background: #f3f3f3; line-height: 64px; }}
</style></head><body>
{body}
</body></html>
"""
