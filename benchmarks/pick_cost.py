"""What "pick for me" costs next to Generate at its defaults: counted work and time, side by side in one run.

    python -m benchmarks.pick_cost            # ~1-3 min; writes benchmarks/results/pick-cost.json and the
                                              # pick-cost section of docs/performance.md

On the embedded model with the app's defaults (its t0, sampler and steps, the learned upscaler), one guide
(`examples/paint-heart.png`), in the process's thread policy (`sdedit.threads.apply()`, as the app): Generate
with 1 sample (the default) and with 4; 4 samples ranked (`sdedit.ranking`: one realism-net and one identity-net
call on the guide and the samples); auto strength with 1 sample and with 4 ranked (`ranking.run_auto`: a probe
per t0 of the model's follows range, then the other samples at the t0 it picks). Network evaluations are
counted on the UNet (rows of a batch), judge calls on the networks' counters. Times are medians of interleaved
rounds, with the load average before and after (a loaded machine makes them upper bounds).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from sdedit import threads

from .harness import load_words

POLICY = threads.apply()  # before torch loads, as app.py does

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "pick-cost.json"
DOCS = REPO / "docs" / "performance.md"
GUIDE = REPO / "examples" / "paint-heart.png"
BUDGET_S = 2.0  # Generate at its defaults on 2 cores


def measure(rounds: int) -> dict:
    import torch

    from benchmarks.upscaler import _timings
    from sdedit import ranking
    from sdedit.pipeline import SDEditPipeline

    pipe = SDEditPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    judge = ranking.default_judge()
    rows = {"n": 0}
    pipe.unet.register_forward_hook(lambda m, args, out: rows.__setitem__("n", rows["n"] + args[0].shape[0]))

    def generate(n: int, rank: bool = False):
        out = pipe(str(GUIDE), num_images=n, seed=0, progress=False)
        if rank:
            guide = pipe.prepare(str(GUIDE), None, "pad")
            ranking.rank(judge.score(guide.canvas, list(out.canvases)))

    def auto(n: int, rank: bool = False):
        settings = pipe.check_inputs(num_images=n)
        guide = pipe.prepare(str(GUIDE), None, settings.fit)
        _, samples = ranking.run_auto(pipe, guide, settings, list(range(n)), judge)
        pipe.postprocess(samples, [guide] * n, settings)
        if rank and n > 1:
            ranking.rank(judge.score(guide.canvas, list(samples.canvases)))

    cases = {
        "generate, 1 sample (the default)": lambda: generate(1),
        "generate, 4 samples": lambda: generate(4),
        "generate, 4 samples, ranked": lambda: generate(4, True),
        "auto t0, 1 sample": lambda: auto(1),
        "auto t0, 4 samples, ranked": lambda: auto(4, True),
    }
    work = {}
    for name, fn in cases.items():
        rows["n"], f0, i0 = 0, judge.realism.extractor.calls, judge.identity.calls
        fn()
        work[name] = {
            "model_evaluations": rows["n"],
            "realism_net_calls": judge.realism.extractor.calls - f0,
            "identity_net_calls": judge.identity.calls - i0,
        }
    load_before = os.getloadavg()[0]
    seconds = _timings(cases, rounds)
    load_after = os.getloadavg()[0]
    cfg = pipe.config
    return {
        "model": cfg.name,
        "defaults": {"strength": cfg.defaults.strength, "sampler": cfg.defaults.sampler},
        "follows": list(cfg.follows) if cfg.follows else None,
        "auto_candidates": ranking.candidates(cfg.follows),
        "cases": {name: {**work[name], "median_s": round(seconds[name], 3)} for name in cases},
        "budget_s": BUDGET_S,
        "rounds": rounds,
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{os.cpu_count()} cores; {threads.describe(POLICY)}",
        "load_average": [round(load_before, 1), round(load_after, 1)],
    }


def render(result: dict) -> str:
    """The docs/performance.md section: pure."""
    rows = [
        f"| {name} | {c['model_evaluations']} | {c['realism_net_calls']} + {c['identity_net_calls']} "
        f"| {c['median_s']:.2f} |"
        for name, c in result["cases"].items()
    ]
    default = next(iter(result["cases"].values()))
    verdict = "within" if default["median_s"] < result["budget_s"] else "over"
    return "\n".join(
        [
            "## Pick for me: what ranking and auto t0 cost",
            "",
            f"Measured by `python -m benchmarks.pick_cost` on `{result['model']}` at its defaults (t0 "
            f"{result['defaults']['strength']:g}, {result['defaults']['sampler']}), one guide, {result['machine']}; "
            f"median of {result['rounds']} interleaved rounds; {load_words(*result['load_average'])}. Auto t0 tries "
            + ", ".join(f"{t:g}" for t in result["auto_candidates"])
            + ".",
            "",
            "| edit | network evaluations | realism + identity net calls | seconds (median) |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"Generate at its defaults takes {default['median_s']:.2f} s here: {verdict} the {result['budget_s']:g} s "
            "budget. Ranking costs no model evaluation, only one call of each judge on the guide and the samples; "
            "auto t0 costs one probe per candidate t0 (its first sample is the chosen probe).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    from benchmarks.harness import publish

    p = argparse.ArgumentParser(prog="python -m benchmarks.pick_cost", description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--no-docs", action="store_true")
    a = p.parse_args(argv)
    result = measure(a.rounds)
    publish(result, Path(a.out), render(result), "pick-cost", docs=not a.no_docs)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
