"""Load, faults and throughput of the live app: `python app.py` in a subprocess, many gradio_client users.

    python -m benchmarks.app_load            # full: the figures in docs/reliability.md and docs/performance.md
                                             # (about 7 minutes)
    python -m benchmarks.app_load --quick    # the bounded form tests/studio/test_load.py runs in CI

Everything goes to 127.0.0.1 only, in a fixed number of requests, and stops by itself. What it does:

1. reliability: 16 concurrent users (threads, each its own gradio_client session), several rounds of mixed
   valid and invalid requests. Latency p50/p95, the error rate of valid requests (must be 0), whether every
   invalid request got its clear message, and the server's memory (VmRSS sampled from /proc) per round.
2. queue full: a burst larger than the app's admission (edit concurrency + queue size): the extra requests
   must be refused at once with "queue is full", and every admitted one must finish.
3. cancel: a long request is cancelled while it runs; the next request must not wait for it.
4. first request after launch, with and without the start-up warm-up.
5. throughput: 1, 4 and 16 concurrent users, with the micro-batcher on (SDEDIT_MAX_BATCH=8) and off (1).

The server chooses its threads by the app's own CPU thread policy (`sdedit.threads`: this benchmark removes
the thread variables from the server's environment, so a user's OMP_NUM_THREADS does not leak into it; on 2
cores that is 1 torch thread with passive waiting) and has its own GRADIO_TEMP_DIR, removed afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from benchmarks.harness import EX, REPO, RESULTS, THREAD_VARS, Server, load_averages, write_json, write_section

DEFAULT_SETTINGS = dict(model="fluent-emoji-64", strength=0.5, sampler="dpmpp", steps=20, repeats=1)  # the app's
QUICK_SETTINGS = dict(DEFAULT_SETTINGS, steps=8)  # 4-5 denoising steps


# ----- requests ---------------------------------------------------------------------------------------------


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_files(folder: Path) -> dict[str, Path]:
    """The bad files the invalid requests send (written once)."""
    photo = Image.open(EX / "photo-cat.png").convert("RGB")
    data = _png(photo)
    files = {
        "truncated.png": data[: len(data) // 2],
        "text.png": b"not an image",
        "bomb.png": _png(Image.new("1", (20000, 20000))),
        "tiny.png": _png(Image.new("RGB", (2, 2))),
        "mask-empty.png": _png(Image.new("L", (256, 256), 0)),
        "mask-small.png": _png(Image.new("L", (64, 48), 255)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, content in files.items():
        (folder / name).write_bytes(content)
        out[name] = folder / name
    return out


# name: (guide, mask, settings overrides, expected message regex)
INVALID = {
    "truncated png": ("truncated.png", None, {}, r"damaged or truncated"),
    "not an image": ("text.png", None, {}, r"not an image"),
    "decompression bomb": ("bomb.png", None, {}, r"too large.*at most 16 MP"),
    "1x2 px image": ("tiny.png", None, {}, r"at least 8 pixels"),
    "empty mask": ("strokes-heart.png", "mask-empty.png", {}, r"mask is empty"),
    "mask of another size": ("strokes-heart.png", "mask-small.png", {}, r"must be the same size"),
    "t0 out of range": ("strokes-heart.png", None, {"strength": 3.0}, r"strength: .*maximum value 1"),
    "over the work limit": (
        "strokes-heart.png",
        None,
        {"strength": 1.0, "steps": 1000, "repeats": 5, "num_samples": 8},
        r"network evaluations",
    ),
    "unknown sampler": ("strokes-heart.png", None, {"sampler": "plms"}, r"not in the list of choices"),
    "path as model": ("strokes-heart.png", None, {"model": "../models/fluent-emoji-64"}, r"not in the list of choices"),
}
VALID_GUIDES = [
    ("strokes-heart.png", None),
    ("strokes-tree.png", None),
    ("photo-car.png", "photo-car-strokes.png"),
    ("strokes-apple.png", None),
    ("photo-cat.png", "photo-cat-strokes.png"),
    ("strokes-smiley.png", None),
]


@dataclass
class Request:
    kind: str  # "valid" or an INVALID key
    guide: Path
    mask: Path | None
    settings: dict
    expect: str | None = None  # regex of the message an invalid request must get


@dataclass
class Outcome:
    kind: str
    valid: bool
    latency_s: float
    ok: bool  # valid: a correct result; invalid: the expected message
    message: str = ""
    batched_requests: int = 1
    round: int = 0


def plan(user: int, count: int, invalid_every: int, settings: dict, files: dict[str, Path]) -> list[Request]:
    """A user's fixed list of requests: valid ones, with one invalid every `invalid_every` (0: none)."""
    out = []
    kinds = list(INVALID)
    for i in range(count):
        n = user * count + i
        if invalid_every and i % invalid_every == invalid_every - 1:
            kind = kinds[n % len(kinds)]
            guide, mask, extra, expect = INVALID[kind]
            gpath = files.get(guide, EX / guide)
            mpath = files.get(mask, EX / mask) if mask else None
            out.append(Request(kind, gpath, mpath, {**settings, "num_samples": 1, "seed": n, **extra}, expect))
        else:
            guide, mask = VALID_GUIDES[n % len(VALID_GUIDES)]
            strength = 0.4 if n % 4 == 3 else settings["strength"]  # a quarter with other settings: two groups
            s = {**settings, "strength": strength, "num_samples": 1, "seed": 1000 + n}
            out.append(Request("valid", EX / guide, EX / mask if mask else None, s))
    return out


def edit_args(guide: Path, mask: Path | None, s: dict) -> dict:
    """The /edit endpoint's arguments by name, for settings `s` (1 sample and seed 0 unless `s` says)."""
    from gradio_client import handle_file

    return dict(
        guide=handle_file(str(guide)),
        mask=handle_file(str(mask)) if mask else None,
        model=s["model"],
        strength=s["strength"],
        sampler=s["sampler"],
        steps=s["steps"],
        repeats=s["repeats"],
        num_samples=s.get("num_samples", 1),
        seed=s.get("seed", 0),
        snr=0.0,
        mask_dilation=0,
        mask_feather=0,
    )


def send(client, req: Request) -> Outcome:
    args = edit_args(req.guide, req.mask, req.settings)
    t0 = time.perf_counter()
    valid = req.kind == "valid"
    try:
        gallery, _anim, _summary, meta = client.predict(**args, api_name="/edit")
    except Exception as exc:  # an AppError for invalid requests; anything else is a failure
        latency = time.perf_counter() - t0
        message = getattr(exc, "message", str(exc))
        ok = (not valid) and bool(re.search(req.expect or "$^", message, re.I)) and "Traceback" not in message
        return Outcome(req.kind, valid, latency, ok, f"{type(exc).__name__}: {message}")
    latency = time.perf_counter() - t0
    meta = meta if isinstance(meta, dict) else json.loads(meta)
    ok = valid and len(gallery) == args["num_samples"] and meta.get("seeds") == [args["seed"]]
    return Outcome(req.kind, valid, latency, ok, "" if ok else "unexpected success", meta.get("batched_requests", 1))


def make_clients(url: str, n: int) -> list:
    """n gradio_client sessions (each ~0.2 s of client CPU to set up: made once, reused across rounds)."""
    from gradio_client import Client

    return [Client(url, verbose=False, download_files=False) for _ in range(n)]


def run_users(clients: list, plans: list[list[Request]], round_: int = 0, timeout: float = 600) -> list[Outcome]:
    """Each plan on its own thread and gradio_client session, all started together; returns every outcome."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    start = threading.Barrier(len(plans))

    def user(client, requests):
        start.wait()
        for req in requests:
            o = send(client, req)
            o.round = round_
            with lock:
                outcomes.append(o)

    threads = [threading.Thread(target=user, args=(c, p), daemon=True) for c, p in zip(clients, plans, strict=True)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"users did not finish within {timeout} s: the server hangs")
    return outcomes


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(outcomes: list[Outcome], wall_s: float | None = None) -> dict:
    valid = [o for o in outcomes if o.valid]
    invalid = [o for o in outcomes if not o.valid]
    lat = [o.latency_s for o in valid]
    out = {
        "requests": len(outcomes),
        "valid": len(valid),
        "invalid": len(invalid),
        "valid_errors": sum(not o.ok for o in valid),
        "valid_error_rate": (sum(not o.ok for o in valid) / len(valid)) if valid else 0.0,
        "invalid_unclear": sum(not o.ok for o in invalid),
        "p50_s": pct(lat, 0.5),
        "p95_s": pct(lat, 0.95),
        "max_s": max(lat, default=None),
        "invalid_p50_s": pct([o.latency_s for o in invalid], 0.5),
        "mean_batched_requests": statistics.mean([o.batched_requests for o in valid]) if valid else None,
        "failures": [o.message for o in outcomes if not o.ok][:10],
    }
    if wall_s is not None:
        out["wall_s"] = wall_s
        out["requests_per_s"] = len(valid) / wall_s if wall_s > 0 else None
    return out


# ----- the scenarios ----------------------------------------------------------------------------------------


def rss_growth(rss: list[float]) -> dict:
    """Growth across rounds: the highest RSS after a round in the second half of the rounds over the highest in
    the first half. A leak or creeping fragmentation makes it positive; a bounded server's RSS wanders (batches
    of different sizes) but its later rounds never exceed its earlier ones by much."""
    half = max(1, len(rss) // 2)
    first, second = max(rss[:half]), max(rss[half:] or rss[-1:])
    return {"rss_growth_mb": second - first, "rss_first_half_max_mb": first, "rss_second_half_max_mb": second}


def reliability(server: Server, files, users: int, rounds: int, per_user: int, invalid_every: int, settings) -> dict:
    """Rounds of concurrent mixed traffic; memory after each round and its peak during it."""
    out = {"users": users, "rounds": [], "settings": settings}
    every: list[Outcome] = []
    clients = make_clients(server.url, users)
    for r in range(rounds):
        plans = [plan(u + r * users, per_user, invalid_every, settings, files) for u in range(users)]
        load = os.getloadavg()[0]
        t_start, wall = time.monotonic(), time.perf_counter()
        outcomes = run_users(clients, plans, r)
        wall = time.perf_counter() - wall
        time.sleep(1.0)  # let the server settle before reading its memory
        rss, _ = server.rss()
        peak = server.peak_since(t_start)
        out["rounds"].append({**summarize(outcomes, wall), "rss_mb": rss, "peak_rss_mb": peak, "load_avg": load})
        every += outcomes
    out["total"] = summarize(every)
    rss = [r["rss_mb"] for r in out["rounds"]]
    out.update(rss_growth(rss))
    out["vm_hwm_mb"] = server.rss()[1]
    return out


def queue_full(server: Server, admitted: int, extra: int, settings: dict, timeout: float = 300) -> dict:
    """`admitted + extra` requests at once: the extra ones are refused at once, the admitted ones all finish.

    Then the same through raw HTTP (what a browser sees): the 503 detail text.
    """
    from gradio_client import Client
    from gradio_client.utils import QueueError

    clients = [Client(server.url, verbose=False, download_files=False) for _ in range(4)]
    n = admitted + extra
    results: list[tuple[str, float, str]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t0 = time.perf_counter()
        s = {**settings, "num_samples": 1, "seed": i}
        try:
            clients[i % len(clients)].predict(**edit_args(EX / "strokes-heart.png", None, s), api_name="/edit")
            outcome = ("done", "")
        except QueueError as exc:
            outcome = ("queue full", str(exc))
        except Exception as exc:
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        with lock:
            results.append((outcome[0], time.perf_counter() - t0, outcome[1]))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, timeout - (time.perf_counter() - t0)))
    hung = sum(t.is_alive() for t in threads)
    refused = [r for r in results if r[0] == "queue full"]
    wall = time.perf_counter() - t0
    return {
        "sent": n,
        "admitted_capacity": admitted,
        "done": sum(r[0] == "done" for r in results),
        "queue_full": len(refused),
        "errors": [r[2] for r in results if r[0] == "error"][:5],
        "hung": hung,
        "refused_after_s_max": max((r[1] for r in refused), default=None),
        "client_message": refused[0][2] if refused else None,
        "raw_detail": raw_queue_full_detail(server, n),
        "wall_s": wall,
        "browser_message": "This application is currently busy. Please try again.",  # gradio 6.31's frontend
    }


def raw_queue_full_detail(server: Server, burst: int) -> str | None:
    """Fill the queue with cheap raw HTTP calls (never read) and return the 503 detail the next one gets."""
    import httpx
    from gradio_client import Client, handle_file

    with open(EX / "strokes-heart.png", "rb") as f:
        path = httpx.post(f"{server.url}/gradio_api/upload", files={"files": f}).json()[0]
    data = [
        {"path": path, "meta": {"_type": "gradio.FileData"}},
        None,
        "fluent-emoji-64",
        0.5,
        "dpmpp",
        2,
        1,
        1,
        0,
        0.0,
        0,
        0,
    ]  # one denoising step: the burst drains in seconds
    # optional inputs added later (e.g. strength_map) are sent as None: the call must have every input
    params = httpx.get(f"{server.url}/gradio_api/info").json()["named_endpoints"]["/edit"]["parameters"]
    data += [None] * (len(params) - len(data))
    detail = None
    with httpx.Client(timeout=30) as http:
        for _ in range(burst):
            r = http.post(f"{server.url}/gradio_api/call/edit", json={"data": data})
            if r.status_code == 503:
                detail = r.json().get("detail")
                break
    # wait until the server serves again
    client = Client(server.url, verbose=False, download_files=False)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            client.predict(handle_file(str(EX / "strokes-heart.png")), None, *data[2:12], api_name="/edit")
            break
        except Exception:
            time.sleep(1)
    return detail


def cancel_frees_slot(server: Server, settings: dict) -> dict:
    """Cancel a long running request; the next short one must not wait for it."""
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=False)
    s = settings
    long_settings = {**s, "strength": 1.0, "steps": 1000, "num_samples": 1, "seed": 0}
    long = client.submit(**edit_args(EX / "strokes-apple.png", None, long_settings), api_name="/edit")
    deadline = time.monotonic() + 120
    while not long.status().progress_data and time.monotonic() < deadline:
        time.sleep(0.1)
    started = bool(long.status().progress_data)
    time.sleep(0.5)
    long.cancel()
    t0 = time.perf_counter()
    client.predict(**edit_args(EX / "strokes-heart.png", None, {**s, "num_samples": 1, "seed": 1}), api_name="/edit")
    return {"long_started": started, "next_request_s": time.perf_counter() - t0, "long_request_evaluations": 1000}


def first_requests(server: Server, settings: dict, n: int = 4) -> dict:
    """The first request after launch, then n - 1 more, one at a time."""
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=False)
    files = {}
    lat = [send(client, r).latency_s for r in plan(0, n, 0, settings, files)]
    return {"first_s": lat[0], "next_median_s": statistics.median(lat[1:]), "startup_s": server.startup_s}


def throughput(servers: dict[str, Server], settings: dict, user_counts=(1, 4, 16), per_user=None) -> dict:
    """Closed-loop users, all valid requests, on each server in turn; requests/s and latency per user count.

    The servers (batching off and on) run side by side and are measured alternately, user count by user
    count and in alternating order, so that a change in the machine's load hits both alike.
    """
    per_user = per_user or {1: 8, 4: 6, 16: 3}
    clients = {name: make_clients(s.url, max(user_counts)) for name, s in servers.items()}
    rows: dict[str, list[dict]] = {name: [] for name in servers}
    names = list(servers)
    for i, users in enumerate(user_counts):
        for name in names if i % 2 == 0 else names[::-1]:
            plans = [plan(100 + u, per_user[users], 0, settings, {}) for u in range(users)]
            load, cpu = os.getloadavg()[0], servers[name].cpu_s()
            t0 = time.perf_counter()
            outcomes = run_users(clients[name][:users], plans)
            wall = time.perf_counter() - t0
            row = {"users": users, "load_avg": round(load, 2), **summarize(outcomes, wall)}
            row["server_cpu_s_per_request"] = (servers[name].cpu_s() - cpu) / max(1, row["valid"])
            rows[name].append(row)
    return rows


# ----- the whole run ----------------------------------------------------------------------------------------


def server_policy() -> str:
    """The thread policy the server applies (the same rule, this machine, without the removed variables)."""
    from sdedit import threads

    return threads.describe(threads.current({k: v for k, v in os.environ.items() if k not in THREAD_VARS}))


def conditions() -> dict:
    import torch

    return {
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu_count": os.cpu_count(),
        "load_avg": load_averages(),
        "client_cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
        "server_policy": server_policy(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


def run(
    quick: bool = False, parts: tuple[str, ...] = ("reliability", "throughput", "first"), repo: Path = REPO
) -> dict:
    """The quick form (CI) or the full one; returns everything measured."""
    import app  # noqa: F401  (fails early and clearly if the app can't be imported)
    from sdedit.studio import limits

    settings = QUICK_SETTINGS if quick else DEFAULT_SETTINGS
    report: dict = {"quick": quick, "conditions_start": conditions(), "settings": settings}
    # Gradio checks the queue's size as requests arrive, before it starts the ones it admits: 16 users arriving
    # together need room in the queue too, so both forms run the app's default queue (16)
    queue_size = 16
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp))
        if "reliability" in parts:
            with Server({"SDEDIT_MAX_BATCH": 8, "SDEDIT_QUEUE_SIZE": queue_size}, repo=repo) as server:
                report["startup_s"] = server.startup_s
                report["first_request_warm"] = first_requests(server, settings)
                rounds, per_user = (3, 2) if quick else (6, 3)
                report["reliability"] = reliability(server, files, 16, rounds, per_user, 2 if quick else 3, settings)
                admitted = limits.CONCURRENCY * 2 * 8 + queue_size  # edit concurrency + the queue
                # the burst uses the app's default settings even in the quick form: slow enough that few finish
                # while it arrives, so the queue really fills
                report["queue_full"] = queue_full(server, admitted, 12 if quick else 16, DEFAULT_SETTINGS)
                report["cancel"] = cancel_frees_slot(server, settings)
        if "throughput" in parts and not quick:
            with Server({"SDEDIT_MAX_BATCH": 1}, repo=repo) as off, Server({"SDEDIT_MAX_BATCH": 8}, repo=repo) as on:
                report["first_request_warm_unbatched"] = first_requests(off, settings)
                report["first_request_warm"] = first_requests(on, settings)
                rows = throughput({"off": off, "on": on}, settings)
                report["throughput_unbatched"], report["throughput_batched"] = rows["off"], rows["on"]
        if "first" in parts and not quick:
            with Server({"SDEDIT_MAX_BATCH": 8, "SDEDIT_WARMUP": 0}, repo=repo) as server:
                report["first_request_cold"] = first_requests(server, settings)
    report["conditions_end"] = conditions()
    return report


# ----- the documents ----------------------------------------------------------------------------------------


def _f(x, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _conditions_line(report: dict) -> str:
    a, b = report["conditions_start"], report["conditions_end"]
    return (
        f"Measured {a['time']} by `python -m benchmarks.app_load` on {a['cpu_count']} CPU cores "
        f"(load average {a['load_avg'][0]} at the start, {b['load_avg'][0]} at the end), "
        f"server's thread policy `{a['server_policy']}`, torch {a['torch']}, Python {a['python']}. "
        f"Settings of valid requests: {report['settings']['sampler']}, {report['settings']['steps']} steps, "
        f"t0 = {report['settings']['strength']} (a quarter at 0.4), 1 sample, the embedded 64 px model."
    )


def reliability_section(report: dict) -> str:
    rel, q, c = report["reliability"], report["queue_full"], report["cancel"]
    lines = [_conditions_line(report), ""]
    lines.append(
        "| round | load avg | requests (valid + invalid) | valid errors | invalid without a clear message | p50 s | "
        "p95 s | mean requests per forward | RSS after MB | peak RSS MB |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rel["rounds"], 1):
        lines.append(
            f"| {i} | {r.get('load_avg', 0):.1f} | {r['requests']} ({r['valid']} + {r['invalid']}) "
            f"| {r['valid_errors']} | {r['invalid_unclear']} "
            f"| {_f(r['p50_s'])} | {_f(r['p95_s'])} | {_f(r['mean_batched_requests'], 1)} | {r['rss_mb']:.0f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    t = rel["total"]
    lines += [
        "",
        f"All rounds: {t['requests']} requests from {rel['users']} concurrent users; error rate of valid requests "
        f"**{t['valid_error_rate']:.0%}**; p50 **{_f(t['p50_s'])} s**, p95 **{_f(t['p95_s'])} s** "
        f"(invalid requests: p50 {_f(t['invalid_p50_s'])} s). "
        f"Memory: the highest RSS after a round was {rel['rss_first_half_max_mb']:.0f} MB in the first half of the "
        f"rounds and {rel['rss_second_half_max_mb']:.0f} MB in the second, **{rel['rss_growth_mb']:+.0f} MB**; the "
        f"server's high-water mark (VmHWM) {rel['vm_hwm_mb']:.0f} MB.",
        "",
        f"Queue full: {q['sent']} requests at once against room for {q['admitted_capacity']} (edit concurrency + "
        f"queue): **{q['queue_full']} refused** within {_f(q['refused_after_s_max'])} s with "
        f"`{q['client_message']}` (gradio_client) / `{q['raw_detail']}` (HTTP 503), {q['done']} finished, "
        f'{q["hung"]} hung, burst over in {_f(q["wall_s"], 1)} s. The browser shows "{q["browser_message"]}".',
        "",
        f"Cancel: a 1000-evaluation request cancelled while running; the next request took "
        f"**{_f(c['next_request_s'])} s** (it would otherwise wait about a minute).",
    ]
    return "\n".join(lines)


def performance_section(report: dict) -> str:
    on, off = report.get("throughput_batched"), report.get("throughput_unbatched")
    lines = [_conditions_line(report), ""]
    if on and off:
        base_on, base_off = on[0]["requests_per_s"], off[0]["requests_per_s"]
        lines.append(
            "| users | batching | load avg | requests | req/s | vs 1 user | p50 s | p95 s | mean requests per forward "
            "| server CPU s per request |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for rows, label, base in ((off, "off (SDEDIT_MAX_BATCH=1)", base_off), (on, "on (8)", base_on)):
            for r in rows:
                lines.append(
                    f"| {r['users']} | {label} | {r.get('load_avg', 0):.1f} | {r['valid']} "
                    f"| {_f(r['requests_per_s'])} | "
                    f"{_f(r['requests_per_s'] / base)}× | {_f(r['p50_s'])} | {_f(r['p95_s'])} | "
                    f"{_f(r['mean_batched_requests'], 1)} | {_f(r.get('server_cpu_s_per_request'))} |"
                )
        lines += [
            "",
            "Batching on ÷ off, requests/s: "
            + ", ".join(
                f"{a['users']} user(s) **{a['requests_per_s'] / b['requests_per_s']:.2f}×**"
                for a, b in zip(on, off, strict=True)
            )
            + "; server CPU seconds per request, off ÷ on: "
            + ", ".join(
                f"{a['users']} user(s) {b['server_cpu_s_per_request'] / a['server_cpu_s_per_request']:.2f}×"
                for a, b in zip(on, off, strict=True)
                if a.get("server_cpu_s_per_request")
            )
            + ".",
        ]
    fw, fc = report.get("first_request_warm"), report.get("first_request_cold")
    if fw and fc:
        lines += [
            "",
            f"First request after launch: warmed at start-up (default) **{_f(fw['first_s'])} s**, then "
            f"{_f(fw['next_median_s'])} s (median of the next 3); without the warm-up (`SDEDIT_WARMUP=0`) "
            f"{_f(fc['first_s'])} s, then {_f(fc['next_median_s'])} s. Launch to first answer of the server: "
            f"{_f(fw['startup_s'], 1)} s warmed, {_f(fc['startup_s'], 1)} s without.",
        ]
    return "\n".join(lines)


def comparison_section(now: dict, before: dict) -> str:
    """The same full run against another checkout's app (`--repo DIR --out FILE`), side by side."""
    rb = before["reliability"]

    def per_forward(rel: dict) -> str:
        values = [r["mean_batched_requests"] for r in rel["rounds"]]
        return f"{min(values):.1f}-{max(values):.1f}"

    def memory(rel: dict) -> str:
        return (
            f"{rel['rss_first_half_max_mb']:.0f} → {rel['rss_second_half_max_mb']:.0f} MB "
            f"({rel['rss_growth_mb']:+.0f}); {rel['vm_hwm_mb']:.0f} MB"
        )

    def batched16(report: dict) -> str:
        r = report["throughput_batched"][-1]
        return (
            f"{_f(r['requests_per_s'])} requests/s, p50 {_f(r['p50_s'], 1)} s, "
            f"{_f(r['server_cpu_s_per_request'])} server CPU s per request"
        )

    def queue_cancel(report: dict) -> str:
        q, c = report["queue_full"], report["cancel"]
        return f"{q['queue_full']} refused at once, {q['hung']} hung; next request {_f(c['next_request_s'])} s"

    a, b = before["conditions_start"], before["conditions_end"]
    rows = [
        ("valid errors, unclear invalid answers", lambda r: f"{r['reliability']['total']['valid_errors']}, "
         f"{r['reliability']['total']['invalid_unclear']}"),
        ("p50 / p95 of valid requests (until the complete answer, animation included)",
         lambda r: f"{_f(r['reliability']['total']['p50_s'])} / {_f(r['reliability']['total']['p95_s'])} s"),
        ("mean requests per forward", lambda r: per_forward(r["reliability"])),
        ("RSS after the rounds, first half → second half; VmHWM", lambda r: memory(r["reliability"])),
        ("throughput at 16 users, batching on", batched16),
        ("queue full, cancel", queue_cancel),
    ]  # fmt: skip
    lines = [
        f"Measured {a['time']} by `python -m benchmarks.app_load --repo DIR --out "
        f"benchmarks/results/app-load-baseline.json` (load average {a['load_avg'][0]} → {b['load_avg'][0]}),"
        f" against the run above ({now['conditions_start']['time']}).",
        "",
        f"| {rb['users']} users, {len(rb['rounds'])} rounds | baseline | this tree |",
        "|---|---|---|",
        *(f"| {label} | {fn(before)} | {fn(now)} |" for label, fn in rows),
    ]
    return "\n".join(lines)


def write_docs(report: dict) -> None:
    write_section("app-load-reliability", reliability_section(report))
    write_section("app-load", performance_section(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the bounded CI form: fewer requests, no doc updates")
    parser.add_argument("--no-docs", action="store_true", help="don't rewrite the docs' sections")
    parser.add_argument("--repo", type=Path, default=REPO, help="serve the app of another checkout (no doc updates)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON report (default: results/app-load.json)")
    args = parser.parse_args(argv)
    other = args.repo.resolve() != REPO.resolve()
    report = run(quick=args.quick, repo=args.repo)
    report["repo"] = str(args.repo)
    write_json(report, args.out or RESULTS / ("app-load-quick.json" if args.quick else "app-load.json"))
    print(json.dumps({k: v for k, v in report.items() if k != "settings"}, indent=2, default=str)[:6000])
    if not args.quick and not args.no_docs and not other:
        write_docs(report)
        print("wrote the app-load sections of docs/reliability.md and docs/performance.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
