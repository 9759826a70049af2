"""The before/after comparison several benchmarks share: a child process of the same script runs on
each checkout's code (`--code ROOT`, which the script puts first on sys.path), alternated `passes`
times in one run; each child prints one JSON line of figures, and the best of each figure is kept."""
import json
import os
import subprocess
import sys


def alternate(script: str, argv: list[str], before: str | None, root: str, best, show) -> dict[str, dict]:
    """{"before"?, "this checkout"} -> {figure: best value}; `best` is min or max, `show(value)` a
    figure as text for the progress lines."""
    codes = ([("before", os.path.abspath(before))] if before else []) + [("this checkout", root)]
    runs: dict[str, list[dict]] = {name: [] for name, _ in codes}
    for _ in range(2 if before else 1):
        for name, code in codes:
            proc = subprocess.run([sys.executable, os.path.abspath(script), *argv, "--code", code],
                                  capture_output=True, text=True, cwd=code)
            if proc.returncode != 0:
                sys.exit(f"{name} ({code}) failed:\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  {name}: " + ", ".join(f"{k} {show(v)}" for k, v in runs[name][-1].items()), flush=True)
    return {name: {k: best(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
