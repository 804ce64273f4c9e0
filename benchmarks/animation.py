"""The reverse-process animation at the results' size: what each way of drawing its frames costs, side by side.

    python -m benchmarks.animation            # the default edit and a long one (200 steps), 15 rounds
    python -m benchmarks.animation --quick    # 3 rounds: a smoke run

The frames are recorded once from real edits on the embedded model (`jobs.run_edit`, the app's path), then
rendered into a GIF in interleaved rounds, three ways:

- `blocks (before)`: each 64 px frame quantized at 64 px and enlarged 3x with nearest neighbour (192 px
  panels): how the animation was drawn before, next to smooth 256 px results.
- `Lanczos + upscaled result (shipped)`: every step resized to the 256 px panel with Lanczos (as the results
  are mapped to the page), the last frame the result canvas through the model's learned upscaler, as the
  result is made (`progress.Animation`).
- `upscaler on every guess`: the model's guess of the clean image upscaled by the learned upscaler at every
  step as well (x_t, pure noise early on, resized with Lanczos).

Reported per way: ms per frame and per animation (decoding the model's frames excluded: it is the same for
all), GIF size, frame size. The load average before and after is recorded: the machine is shared, re-run
on a quiet one before quoting absolute times. The rendering runs after the result has gone out (`/edit`
sends the results first), so it adds to the animation's wait, not the result's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.harness import publish

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "animation.json"
DOCS = REPO / "docs" / "performance.md"


def record(steps: int):
    """The frames of one edit on the embedded model (the app's path): (decoded frames, result canvas, upscaler)."""
    from sdedit.studio import jobs
    from sdedit.studio.jobs import EditSettings

    r = jobs.run_edit(str(REPO / "examples" / "paint-heart.png"), None, EditSettings(seed=0, steps=steps))
    anim = r.pending_animation
    return anim._recorder.frames(), anim._result, anim._upscaler


def blocks_gif(frames, path: Path, panel: int = 192, gap: int = 6) -> Path:
    """The animation as it was drawn before: quantized at the model's resolution, enlarged by nearest neighbour."""
    import numpy as np
    from PIL import Image, ImageDraw

    from sdedit.studio import progress

    images = []
    for left, right, x, x0 in frames:
        k = max(1, panel // x.shape[0])
        g = max(1, round(gap / k))
        side = x.shape[0]
        row = np.full((side, 2 * side + g, 3), 255, np.uint8)
        row[:, :side], row[:, side + g :] = x, x0
        q = Image.fromarray(row).quantize(253, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        q = q.resize((q.width * k, q.height * k), Image.NEAREST)
        frame = Image.new("P", (q.width, q.height + 22), 253)
        frame.putpalette(q.getpalette())
        frame.paste(q, (0, 22))
        draw = ImageDraw.Draw(frame)
        draw.text((4, 4), left, fill=254, font=progress._font())
        draw.text((side * k + g * k + 4, 4), right, fill=255, font=progress._font())
        images.append(frame)
    images[0].save(path, save_all=True, append_images=images[1:], duration=110, loop=0)
    return path


def ways(frames, result, upscaler):
    from sdedit.studio.progress import render_animation

    def blocks(path):
        return blocks_gif([*frames, ("result", "result", result, result)], path)

    def shipped(path):
        final = upscaler.upscale(result)
        return render_animation([*frames, ("result", "result", final, final)], path)

    def every(path):
        import numpy as np

        guesses = upscaler.upscale(np.stack([f[3] for f in frames]))
        upscaled = [(a, b, x, g) for (a, b, x, _), g in zip(frames, guesses, strict=True)]
        final = upscaler.upscale(result)
        return render_animation([*upscaled, ("result", "result", final, final)], path)

    return {"blocks (before)": blocks, "Lanczos + upscaled result (shipped)": shipped, "upscaler on every guess": every}


def measure(frames, result, upscaler, rounds: int, folder: Path) -> dict:
    from PIL import Image

    fns = ways(frames, result, upscaler)
    times: dict[str, list[float]] = {name: [] for name in fns}
    sizes, shapes = {}, {}
    for name, fn in fns.items():  # one warm-up each
        path = fn(folder / "warm.gif")
        sizes[name], shapes[name] = path.stat().st_size, Image.open(path).size
    for r in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(folder / f"{r}.gif")
            times[name].append(time.perf_counter() - t)
    n = len(frames) + 1
    return {
        name: {
            "frames": n,
            "ms_per_animation": round(1000 * statistics.median(ts), 1),
            "ms_per_frame": round(1000 * statistics.median(ts) / n, 2),
            "gif_kb": round(sizes[name] / 1000, 1),
            "frame_size": list(shapes[name]),
        }
        for name, ts in times.items()
    }


def render(result: dict) -> str:
    lines = [
        f"The reverse-process animation, three ways of drawing its frames ({result['rounds']} interleaved rounds, "
        f"medians; load average {result['load_avg_before'][0]:.1f} before, {result['load_avg_after'][0]:.1f} "
        f"after; {result['threads']} torch thread(s); `python -m benchmarks.animation`, "
        "`benchmarks/results/animation.json`). It is rendered after the results have gone out.",
        "",
        "| edit | way | frames | frame px | ms per frame | ms per animation | GIF kB |",
        "|---|---|---|---|---|---|---|",
    ]
    for edit, rows in result["edits"].items():
        for way, m in rows.items():
            w, h = m["frame_size"]
            lines.append(
                f"| {edit} | {way} | {m['frames']} | {w}×{h} | {m['ms_per_frame']:.1f} | {m['ms_per_animation']:.0f} "
                f"| {m['gif_kb']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 rounds, the default edit only")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the docs section")
    args = parser.parse_args(argv)

    from sdedit import threads

    threads.apply()
    import torch

    from sdedit.configs import default_config

    rounds = 3 if args.quick else args.rounds
    d = default_config().defaults
    edits = {f"default (t0 {d.strength:g}, {d.num_inference_steps} steps)": d.num_inference_steps}
    if not args.quick:
        edits[f"long (t0 {d.strength:g}, 200 steps)"] = 200
    load_before = [round(x, 2) for x in os.getloadavg()]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, n in edits.items():
            out[name] = measure(*record(n), rounds, Path(tmp))
    result = {
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "time": time.ctime(),
        "edits": out,
    }
    publish(result, Path(args.out), render(result), "animation", docs=not args.no_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
