"""What transformers costs the embedded default's start: with it installed, and with it absent, side by side.

Each run is a fresh interpreter that imports sdedit, loads the embedded default and makes one small edit. The
"absent" runs set `sys.modules["transformers"] = None` first, which is exactly what Python sees when it is not
installed (diffusers then treats it as unavailable). The runs alternate, so load on the machine hits both alike;
medians and the load average go to benchmarks/results/latent-import.json.

    python -m benchmarks.latent_import [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, md_table, write_json
from benchmarks.harness import REPO, write_section

HIDE = "import sys; sys.modules['transformers'] = None\n"
PROGRAM = """
import time; t0 = time.perf_counter()
import json, sys, numpy as np
from sdedit import SDEditPipeline
t1 = time.perf_counter()
pipe = SDEditPipeline.from_pretrained(None)
t2 = time.perf_counter()
pipe(np.zeros((64, 64, 3), np.uint8), num_inference_steps=2, progress=False)
t3 = time.perf_counter()
mods = [m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "transformers"]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "edit_s": t3 - t2, "transformers_modules": len(mods)}))
"""
VARIANTS = {"installed": "", "absent": HIDE}


def one(variant: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", VARIANTS[variant] + PROGRAM], cwd=REPO, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"variant": variant, "process_s": wall, **row}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=7, help="runs per variant, alternating")
    p.add_argument("--out", default=str(RESULTS / "latent-import.json"))
    p.add_argument("--docs", action="store_true", help="render the table into docs/performance.md")
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = [one(v) for _ in range(args.runs) for v in VARIANTS]
    summary = {}
    for v in VARIANTS:
        mine = [r for r in rows if r["variant"] == v]
        summary[v] = {k: statistics.median(r[k] for r in mine) for k in ("process_s", "import_s", "load_s", "edit_s")}
        summary[v]["transformers_modules"] = max(r["transformers_modules"] for r in mine)
    delta = {k: summary["installed"][k] - summary["absent"][k] for k in ("process_s", "import_s", "load_s")}
    result = {
        "command": " ".join(["python -m benchmarks.latent_import", *(sys.argv[1:] if argv is None else argv)]),
        "what": "fresh interpreter: import sdedit, load the embedded default, one 2-step edit; medians",
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "summary": summary,
        "installed_minus_absent_s": delta,
        "runs": rows,
    }
    out = Path(args.out)
    write_json(result, out.name, out.parent)
    print(json.dumps({"summary": summary, "installed_minus_absent_s": delta}, indent=2))
    if args.docs:
        write_section("latent-import", table(result))
    return 0


def table(result: dict) -> str:
    rows = [{"variant": f"transformers {v}", **result["summary"][v]} for v in VARIANTS]
    head = (
        f"Recorded by `{result['command']}` ({len(result['runs']) // len(VARIANTS)} alternating runs each, medians; "
        f"load {result['load_avg_before']:.1f} before, {result['load_avg_after']:.1f} after, "
        f"{result['cpu_count']} cores).\n\n"
    )
    columns = [
        ("variant", ""),
        ("process_s", "process (s)"),
        ("import_s", "import sdedit (s)"),
        ("load_s", "load the default (s)"),
        ("edit_s", "first edit (s)"),
        ("transformers_modules", "transformers modules loaded"),
    ]
    return head + md_table(rows, columns)


if __name__ == "__main__":
    raise SystemExit(main())
