"""Live preview under load: 8 visitors painting live and 2 pressing Generate, against `python app.py`.

    OMP_NUM_THREADS=1 python -m benchmarks.live_load            # 60 s alone + 60 s of load, ~3.5 min; writes the
                                                                # figures to docs/reliability.md
    OMP_NUM_THREADS=1 python -m benchmarks.live_load --seconds 15 --no-docs   # a short look

The app runs as `python app.py` on a free port of 127.0.0.1 (one torch thread, its own Gradio temp dir),
through its real HTTP API only:

* painters call the canvas's server function (`POST /gradio_api/component_server/`, fn `preview`, the paint
  canvas's component id read from `/config`), exactly what the page's JavaScript sends on pointer-up: one
  canvas every 300 ms each, without waiting for the answer (as a browser does), each canvas one stroke more
  than the last. Each answer is a preview, `stale` (a newer canvas of the same visitor replaced it while it
  waited: dropped, never computed) or an error.
* two Generate users call `/edit` through gradio_client in a closed loop (the app's defaults: dpmpp, 20-step
  schedule, t0 = 0.5, 1 sample).

Before the load, the idle latencies: Generate (5 requests) and one preview (10 canvases, one at a time), then
the same Generate users alone for as long as the load (the baseline: what the machine gives them right now,
without painters). Every painter's canvases are drawn and encoded before the clock starts. The server's and
this benchmark's CPU time are recorded per phase. The checks: no errors; every stale answer counted;
Generate's p95 under load within 2 x its idle median plus one idle preview; the server's RSS (from /proc,
every 0.25 s) flat: the highest RSS of the run's last third against its first third. Every loop is bounded
by the duration and a request count; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import re
import statistics
import threading
import time

import numpy as np
from PIL import Image, ImageDraw

from .app_load import edit_args
from .harness import EX, RESULTS, Server, load_average, load_words, machine, publish

SETTINGS = dict(model="fluent-emoji-64", strength=0.5, sampler="dpmpp", steps=20, repeats=1)
PALETTE = [(255, 200, 61), (249, 47, 96), (0, 166, 237), (0, 210, 106), (33, 33, 33), (141, 101, 197)]


def canvas_id(url: str) -> int:
    """The paint canvas's component id, from the app's config (what the page's server calls name)."""
    import httpx

    for path in ("/config", "/gradio_api/config"):
        r = httpx.get(url + path, timeout=10)
        if r.status_code == 200:
            for comp in r.json().get("components", []):
                if comp.get("props", {}).get("elem_id") == "paint-editor":
                    return int(comp["id"])
    raise RuntimeError("no paint canvas (elem_id paint-editor) in the app's config")


class Painter:
    """One visitor's canvas: a stroke more each time."""

    def __init__(self, i: int):
        self.rng = np.random.default_rng(i)
        self.image = Image.new("RGB", (256, 256), "white")
        self.visitor = f"load-visitor-{i:02d}-{self.rng.integers(1 << 30):x}"
        self.seq = 0

    def next_canvas(self) -> dict:
        x0, y0 = self.rng.uniform(30, 226, 2)
        x1, y1 = np.clip([x0 + self.rng.uniform(-60, 60), y0 + self.rng.uniform(-60, 60)], 10, 246)
        colour = PALETTE[int(self.rng.integers(len(PALETTE)))]
        ImageDraw.Draw(self.image).line((x0, y0, x1, y1), fill=colour, width=int(self.rng.integers(6, 20)))
        buf = io.BytesIO()
        self.image.save(buf, "PNG")
        self.seq += 1
        return {
            "visitor": self.visitor,
            "seq": self.seq,
            "guide": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
            "mask": None,
            "settings": {"model": SETTINGS["model"], "strength": SETTINGS["strength"], "seed": -1},
        }


async def call_preview(client, url: str, cid: int, session: str, payload: dict) -> tuple[str, float, dict]:
    """One call as the page makes it. A keep-alive connection that the server closed just as it was reused
    (httpx's ReadError / RemoteProtocolError before any answer) is sent again once, on a fresh connection,
    and counted (`retried`)."""
    import httpx

    body = json.dumps({"data": payload, "component_id": cid, "fn_name": "preview", "session_hash": session})
    headers = {"Content-Type": "application/json"}
    t0 = time.perf_counter()
    retried = False
    for attempt in range(2):
        try:
            r = await client.post(url + "/gradio_api/component_server/", content=body, headers=headers, timeout=120)
            out = r.json() if r.status_code == 200 else {"error": f"HTTP {r.status_code}: {r.text[:200]}"}
            break
        except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
            if attempt:
                out = {"error": f"{type(exc).__name__}: {exc}"}
            retried = True
        except Exception as exc:  # a failed call is an error of the run
            out = {"error": f"{type(exc).__name__}: {exc}"}
            break
    ms = (time.perf_counter() - t0) * 1000
    kind = "error" if out.get("error") else "stale" if out.get("stale") else "preview" if out.get("image") else "?"
    return kind, ms, {**out, "retried": retried}


def sketch(n: int, every_s: float, seconds: float) -> list[list[dict]]:
    """Every painter's canvases, drawn and encoded before the clock starts (the load generator's CPU stays out
    of the measured window)."""
    per_painter = int(seconds / every_s) + 2
    out = []
    for i in range(n):
        p = Painter(i)
        out.append([p.next_canvas() for _ in range(per_painter)])
    return out


async def painters(url: str, cid: int, sketches: list[list[dict]], every_s: float, seconds: float) -> dict:
    import httpx

    results: list[tuple[str, float, dict]] = []
    n = len(sketches)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client:

        async def paint(i: int) -> None:
            session = f"loadsession{i:02d}"
            canvases = sketches[i]
            tasks = []
            start = time.perf_counter() + i * every_s / n  # staggered
            k = 0
            while True:
                at = start + k * every_s
                if at - start > seconds:
                    break
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                tasks.append(asyncio.create_task(call_preview(client, url, cid, session, canvases[k % len(canvases)])))
                k += 1
            results.extend(await asyncio.gather(*tasks))

        await asyncio.gather(*(paint(i) for i in range(n)))
    kinds = [k for k, _, _ in results]
    computed = [ms for k, ms, _ in results if k == "preview"]
    errors = [out.get("error") for k, _, out in results if k in ("error", "?")]
    return {
        "sent": len(results),
        "previews": kinds.count("preview"),
        "stale": kinds.count("stale"),
        "errors": len(errors),
        "retried": sum(bool(out.get("retried")) for _, _, out in results),
        "error_examples": sorted(set(map(str, errors)))[:5],
        "preview_p50_ms": statistics.median(computed) if computed else None,
        "preview_p95_ms": float(np.percentile(computed, 95)) if computed else None,
        "compute_p50_ms": statistics.median([o["compute_ms"] for k, _, o in results if k == "preview"] or [0]),
    }


def generate_loop(
    url: str, seconds: float, out: list, errors: list, timings: list | None = None, max_requests: int = 200
) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    args = edit_args(EX / "strokes-heart.png", None, SETTINGS)
    end = time.perf_counter() + seconds
    for _ in range(max_requests):
        if time.perf_counter() >= end:
            break
        t0 = time.perf_counter()
        try:
            *_, meta = client.predict(**{**args, "seed": int(time.time() * 1000) % 100000}, api_name="/edit")
            out.append(time.perf_counter() - t0)
            if timings is not None:
                meta = meta if isinstance(meta, dict) else json.loads(meta)
                timings.append(
                    {
                        **meta.get("timings", {}),
                        "latency_s": round(out[-1], 3),
                        "batched_requests": meta.get("batched_requests", 1),
                    }
                )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")


def idle_latencies(url: str, cid: int) -> dict:
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    args = edit_args(EX / "strokes-heart.png", None, SETTINGS)
    client.predict(**args, api_name="/edit")  # warm
    gen, sample_s = [], []
    for i in range(5):
        t0 = time.perf_counter()
        *_, meta = client.predict(**{**args, "seed": i}, api_name="/edit")
        gen.append(time.perf_counter() - t0)
        sample_s.append((meta if isinstance(meta, dict) else json.loads(meta)).get("timings", {}).get("sample_s", 0))

    async def previews() -> list[float]:
        import httpx

        p, out = Painter(99), []
        async with httpx.AsyncClient() as c:
            await call_preview(c, url, cid, "idlesession", p.next_canvas())  # warm
            for _ in range(10):
                kind, ms, res = await call_preview(c, url, cid, "idlesession", p.next_canvas())
                if kind != "preview":
                    raise RuntimeError(f"an idle preview failed: {res}")
                out.append(ms)
        return out

    prev = asyncio.run(previews())
    return {
        "generate_s": gen,
        "generate_p50_s": statistics.median(gen),
        "generate_sample_p50_s": statistics.median(sample_s),
        "preview_ms": prev,
        "preview_p50_ms": statistics.median(prev),
    }


def generate_phase(url: str, seconds: float, generators: int, during=None) -> tuple[dict, object]:
    """`generators` closed-loop Generate users for `seconds`, while `during()` runs (the painters) if given."""
    lat: list[float] = []
    err: list[str] = []
    timings: list[dict] = []
    threads = [
        threading.Thread(target=generate_loop, args=(url, seconds, lat, err, timings), daemon=True)
        for _ in range(generators)
    ]
    for t in threads:
        t.start()
    other = during() if during is not None else time.sleep(seconds)
    for t in threads:
        t.join(300)
    queued = [t.get("queued_s", 0) for t in timings] or [0]
    return {
        "requests": len(lat),
        "errors": len(err),
        "error_examples": sorted(set(err))[:5],
        "p50_s": statistics.median(lat) if lat else None,
        "p95_s": float(np.percentile(lat, 95)) if lat else None,
        "max_s": max(lat, default=None),
        # where the time went: the forward itself, and the wait for the model (others' forwards, a preview)
        "sample_p50_s": statistics.median([t.get("sample_s", 0) for t in timings] or [0]),
        "queued_p50_s": statistics.median(queued),
        "queued_p95_s": float(np.percentile(queued, 95)),
        "requests_detail": timings,
    }, other


def run(seconds: float, painters_n: int, generators: int, every_s: float, baseline_s: float) -> dict:
    out: dict = {"seconds": seconds, "painters": painters_n, "generators": generators, "every_s": every_s}
    with Server(env={"SDEDIT_LIVE_STATS_LOG": "1"}) as server:
        out["startup_s"] = server.startup_s
        cid = canvas_id(server.url)
        out["idle"] = idle_latencies(server.url, cid)
        print(
            f"idle: Generate p50 {out['idle']['generate_p50_s']:.2f} s, preview p50 "
            f"{out['idle']['preview_p50_ms']:.0f} ms",
            flush=True,
        )
        if baseline_s > 0:  # the same Generate users without painters, right before: what the machine gives now
            out["baseline_load"] = load_average()
            cpu0, own0 = server.cpu_s(), time.process_time()
            out["baseline"], _ = generate_phase(server.url, baseline_s, generators)
            out["baseline"]["server_cpu_per_s"] = (server.cpu_s() - cpu0) / baseline_s
            out["baseline"]["benchmark_cpu_per_s"] = (time.process_time() - own0) / baseline_s
            print(f"baseline (Generate alone): p95 {out['baseline']['p95_s']:.2f} s", flush=True)
        sketches = sketch(painters_n, every_s, seconds)
        out["load_start"] = load_average()
        rss0 = server.rss()[0]
        cpu0, own0 = server.cpu_s(), time.process_time()
        t_start = time.monotonic()
        out["generate"], out["live"] = generate_phase(
            server.url,
            seconds,
            generators,
            lambda: asyncio.run(painters(server.url, cid, sketches, every_s, seconds)),
        )
        t_end = time.monotonic()
        out["generate"]["server_cpu_per_s"] = (server.cpu_s() - cpu0) / (t_end - t_start)
        out["generate"]["benchmark_cpu_per_s"] = (time.process_time() - own0) / (t_end - t_start)
        out["load_end"] = load_average()
        third = (t_end - t_start) / 3
        samples = [(ts, mb) for ts, mb in server.samples if t_start <= ts <= t_end]
        first = [mb for ts, mb in samples if ts < t_start + third]
        last = [mb for ts, mb in samples if ts > t_end - third]
        out["rss"] = {
            "before_mb": rss0,
            "after_mb": server.rss()[0],
            "peak_first_third_mb": max(first, default=0.0),
            "peak_last_third_mb": max(last, default=0.0),
            "hwm_mb": server.rss()[1],
        }
        log = server.log()
        out["server_tracebacks"] = len(re.findall(r"Traceback", log))
        stats = re.findall(r"live stats (\{.*\})", log)
        out["server_live_stats"] = json.loads(stats[-1]) if stats else {}
    idle_gen, idle_prev = out["idle"]["generate_p50_s"], out["idle"]["preview_p50_ms"] / 1000
    out["generate_bound_s"] = 2 * idle_gen + idle_prev
    g, lv = out["generate"], out["live"]
    out["checks"] = {
        "no errors": lv["errors"] == 0 and g["errors"] == 0,
        "stale previews dropped and counted": lv["stale"] > 0 and lv["previews"] + lv["stale"] == lv["sent"],
        "Generate p95 within 2 x idle + one preview": g["p95_s"] is not None and g["p95_s"] <= out["generate_bound_s"],
        "memory flat (last third's peak within 5% of the first's)": out["rss"]["peak_last_third_mb"]
        <= 1.05 * out["rss"]["peak_first_third_mb"],
    }
    out["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out["env"] = machine()
    return out


def _machine(r: dict) -> str:
    """', 2 cores (x86_64), torch ...' where the record has them (older records do not)."""
    env = r.get("env")
    return f", {env['cores']} cores ({env['machine']}), torch {env['torch']}" if env else ""


def markdown(r: dict) -> str:
    lv, g, rss, idle, b = r["live"], r["generate"], r["rss"], r["idle"], r.get("baseline")
    st = r.get("server_live_stats") or {}
    checks = "; ".join(f"{name}: **{'yes' if ok else 'NO'}**" for name, ok in r["checks"].items())
    return "\n".join(
        [
            f"Measured {r['when']} by `OMP_NUM_THREADS=1 python -m benchmarks.live_load`: `python app.py` on "
            f"127.0.0.1{_machine(r)}; over the load phase, {load_words(r['load_start'], r['load_end'])}. "
            f"{r['painters']} visitors paint live, one "
            f"canvas every {r['every_s'] * 1000:.0f} ms each for {r['seconds']:.0f} s, through the canvas's "
            "server function (`/gradio_api/component_server/`, what the page sends on pointer-up), without "
            f"waiting for answers; {r['generators']} users press Generate (`/edit`, closed loop, the app's "
            "defaults).",
            "",
            "| | value |",
            "|---|---|",
            f"| idle: Generate p50 (5 requests) | {idle['generate_p50_s']:.2f} s |",
            f"| idle: one preview p50 (10 canvases, round trip) | {idle['preview_p50_ms']:.0f} ms |",
            f"| canvases sent | {lv['sent']} ({lv['sent'] / r['seconds']:.1f}/s) |",
            f"| previews computed | {lv['previews']} (round trip p50 {lv['preview_p50_ms']:.0f} ms, p95 "
            f"{lv['preview_p95_ms']:.0f} ms; compute p50 {lv['compute_p50_ms']:.0f} ms) |",
            f"| stale canvases dropped (replaced while waiting, never computed) | {lv['stale']} |",
            f"| preview errors | {lv['errors']} (calls sent again once after a dropped keep-alive connection: "
            f"{lv.get('retried', 0)}) |",
            *(
                [
                    f"| Generate alone, the same {r['generators']} users just before (baseline, load average "
                    f"{r['baseline_load']:.1f}) | {b['requests']} requests, p50 {b['p50_s']:.2f} s, p95 "
                    f"{b['p95_s']:.2f} s (forward p50 {b['sample_p50_s']:.2f} s, waiting p50 "
                    f"{b['queued_p50_s']:.2f} s); server CPU {b.get('server_cpu_per_s', 0):.2f} core, this "
                    f"benchmark {b.get('benchmark_cpu_per_s', 0):.2f} core |"
                ]
                if b
                else []
            ),
            f"| Generate under load | {g['requests']} requests, {g['errors']} errors, p50 {g['p50_s']:.2f} s, "
            f"p95 {g['p95_s']:.2f} s, max {g['max_s']:.2f} s (forward p50 {g['sample_p50_s']:.2f} s, waiting "
            f"p50 {g['queued_p50_s']:.2f} s, p95 {g['queued_p95_s']:.2f} s); server CPU "
            f"{g.get('server_cpu_per_s', 0):.2f} core, this benchmark (the painters) "
            f"{g.get('benchmark_cpu_per_s', 0):.2f} core |",
            f"| bound: 2 x idle Generate + one preview | {r['generate_bound_s']:.2f} s |",
            f"| previews that held the model while an edit was waiting for it (server's count, whole run) | "
            f"{st.get('edits_behind_a_preview', '–')}, each for at most {st.get('edit_delay_max_ms', 0):.0f} ms "
            f"(p50 {st.get('edit_delay_p50_ms', 0):.0f} ms): the longest any Generate waited for a preview |",
            f"| server RSS | {rss['before_mb']:.0f} MB before, {rss['after_mb']:.0f} MB after; peak "
            f"{rss['peak_first_third_mb']:.0f} MB in the first third, {rss['peak_last_third_mb']:.0f} MB in the "
            f"last; high-water mark {rss['hwm_mb']:.0f} MB |",
            "",
            f"Checks: {checks}.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--painters", type=int, default=8)
    p.add_argument("--generators", type=int, default=2)
    p.add_argument("--every-ms", type=float, default=300.0)
    p.add_argument("--baseline-seconds", type=float, default=60.0, help="Generate alone first (0: skip)")
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args(argv)
    r = run(min(args.seconds, 600.0), args.painters, args.generators, args.every_ms / 1000, args.baseline_seconds)
    publish(r, RESULTS / "live-load.json", markdown(r), "live-load", not args.no_docs)
    return 0 if all(r["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
