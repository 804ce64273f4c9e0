"""The app next to the library, measured side by side in one run.

    python -m benchmarks.app_speed                       # everything (~6 minutes on 2 cores): prints the ratios,
                                                         # writes results/app-speed.json and its docs section
    python -m benchmarks.app_speed --parts latency,busy  # some parts only (latency, busy, throughput, breakdown)
    python -m benchmarks.app_speed --baseline DIR        # also the app of another checkout (e.g. the commit
                                                         # before, from `git archive`), side by side: before/after

This process applies the CPU thread policy first (`sdedit.threads.apply()`, as the app does), loads the
library's `SDEditPipeline` and starts `python app.py` in a subprocess with the policy's own choice (no OMP
variables forced). The edit is the app's default on the embedded model: examples/strokes-heart.png (256 px),
`SETTINGS` (the config's defaults: t0 = 0.4, DPM-Solver++ N = 20, 8 evaluations), 1 sample. The library call
gets the same file path and `progress=False`. Every measurement records the 1-minute load average.

* latency (a): one visitor, rounds alternating a library call and app requests, three ways in: gradio_client
  as it comes (`Client(url)`, files downloaded as a user of the client gets them), gradio_client with
  `ssl_verify=False` (the same requests; its per-request httpx clients then skip loading the CA bundle, which
  plain HTTP to 127.0.0.1 never uses), and plain HTTP on one kept connection as the page talks to the app
  (upload, /gradio_api/call/edit, its event stream, the result image). `result_s`: from the start to the
  results (the first output, its image fetched); `full_s`: until the request is done (with the animation;
  what `predict` waits for). Ratios: app ÷ library, medians.
* busy (b): the same, in blocks idle / beside one `python -c "while True: pass"` started here / idle / busy;
  ratios busy ÷ idle for the library and the app.
* throughput (c): the app's requests/s with 1, 4 and 16 closed-loop visitors (each its own gradio_client
  session, `ssl_verify=False`: the clients run on the same cores as the server), and the library's best
  batched throughput (images/s over batch 1, 2, 4, 8) measured before each block of visitors and after the
  last; ratios app ÷ the best library figure measured next to the block.
* breakdown: where an app request's time goes. In this process: `run_edit` unbatched and through the
  batcher, with and without the animation, and the deferred work (GIF, PNG files) timed alone; in the
  server: Gradio's own per-phase profile (`GRADIO_PROFILING=1`), and the request's own timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

from sdedit import threads

POLICY = threads.apply()  # before torch loads, as app.py does

from benchmarks.app_load import edit_args, pct  # noqa: E402  (after the thread policy)
from benchmarks.harness import (  # noqa: E402
    EX,
    RESULTS,
    Server,
    busy_process,
    load_average,
    load_averages,
    load_words,
    write_json,
    write_section,
)

GUIDE = EX / "strokes-heart.png"
# the app's default edit on the embedded model (configs/fluent-emoji-64.yaml's defaults; a test keeps them equal)
SETTINGS = dict(model="fluent-emoji-64", strength=0.4, sampler="dpmpp", steps=20, repeats=1, num_samples=1)
TARGETS = {"latency": 1.3, "busy": 3.0}


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


# ----- the two sides ----------------------------------------------------------------------------------------


class Library:
    """The library's `SDEditPipeline`, here, on the embedded model."""

    def __init__(self):
        from sdedit import SDEditPipeline
        from sdedit.accel import quiet_diffusers

        with quiet_diffusers():
            self.pipe = SDEditPipeline.from_pretrained(None)
        self.edit(0)

    def edit(self, seed: int, num_images: int = 1) -> float:
        s = SETTINGS
        t0 = time.perf_counter()
        self.pipe(
            str(GUIDE),
            strength=s["strength"],
            sampler=s["sampler"],
            num_inference_steps=s["steps"],
            num_images=num_images,
            seed=seed,
            progress=False,
        )
        return time.perf_counter() - t0


def app_request(client, seed: int) -> dict:
    """One /edit through gradio_client: seconds to the first output (the results) and to the end."""
    t0 = time.perf_counter()
    job = client.submit(**edit_args(GUIDE, None, {**SETTINGS, "seed": seed}), api_name="/edit")
    result_s = None
    while not job.done():
        if result_s is None and job.outputs():
            result_s = time.perf_counter() - t0
        time.sleep(0.005)
    full_s = time.perf_counter() - t0
    out = job.result()  # raises the app's error, if any
    meta = out[3] if isinstance(out[3], dict) else json.loads(out[3])
    return {
        "result_s": full_s if result_s is None else result_s,  # an app that answers once: its only output
        "full_s": full_s,
        "outputs": len(job.outputs()),
        "animation": out[1] is not None,
        "timings": meta.get("timings", {}),
    }


class RawClient:
    """/edit over plain HTTP on one kept connection, as a browser talks to the app: upload the guide, POST
    /gradio_api/call/edit, read its event stream; then fetch the first result image. No client library."""

    def __init__(self, url: str):
        import httpx

        self.url = url
        self.http = httpx.Client(base_url=url, timeout=120)
        # /edit's inputs in order (optional ones such as strength_map are sent as None)
        params = self.http.get("/gradio_api/info").json()["named_endpoints"]["/edit"]["parameters"]
        self.names = [p["parameter_name"] for p in params]

    def __call__(self, seed: int) -> dict:
        s = {**SETTINGS, "seed": seed}
        t0 = time.perf_counter()
        with open(GUIDE, "rb") as f:
            path = self.http.post("/gradio_api/upload", files={"files": f}).json()[0]
        guide = {"path": path, "meta": {"_type": "gradio.FileData"}}
        values = dict(
            guide=guide,
            model=s["model"],
            strength=s["strength"],
            sampler=s["sampler"],
            steps=s["steps"],
            repeats=s["repeats"],
            num_samples=1,
            seed=seed,
            snr=0.0,
            mask_dilation=0,
            mask_feather=0,
        )
        data = [values.get(name) for name in self.names]
        event_id = self.http.post("/gradio_api/call/edit", json={"data": data}).json()["event_id"]
        result_s, first, event = None, None, ""
        with self.http.stream("GET", f"/gradio_api/call/edit/{event_id}") as r:
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("generating", "complete"):
                    if first is None:
                        first = json.loads(line[5:])
                        self.http.get(first[0][0]["image"]["url"]).read()  # the browser shows the image
                        result_s = time.perf_counter() - t0
                    if event == "complete":
                        break
                elif line.startswith("data:") and event == "error":
                    raise RuntimeError(f"the app answered with an error: {line}")
        return {"result_s": result_s, "full_s": time.perf_counter() - t0, "timings": first[3].get("timings", {})}


def server_env(profiling: bool = True) -> dict:
    """The app's environment: the thread policy decides (user thread variables cleared), Gradio profiling on."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SDEDIT_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        os.environ.pop(name, None)  # Server copies os.environ: let the app's own policy choose
    return {"GRADIO_PROFILING": "1"} if profiling else {}


# ----- (a) one visitor --------------------------------------------------------------------------------------


def latency(lib: Library, apps: dict[str, tuple[object, Server]], rounds: int) -> dict:
    """Rounds of: a library edit, then one request to each app (one visitor at a time).

    Besides wall-clock seconds, CPU seconds: the library's (this process, during its call), the server's (all
    its threads, from /proc, 10 ms ticks) and the client's (this process during the request: gradio_client's
    threads, or the plain HTTP client). CPU seconds hardly move when other processes load the machine; wall
    seconds do.
    """
    rows: dict[str, list] = {"library": [], **{name: [] for name in apps}}
    lib_cpu: list[float] = []
    loads = []
    for i in range(rounds):
        loads.append(load_average())
        c0 = time.process_time()
        rows["library"].append(lib.edit(100 + i))
        lib_cpu.append(time.process_time() - c0)
        for name, (client, server) in apps.items():
            c0, s0 = time.process_time(), server.cpu_s()
            r = client(100 + i) if isinstance(client, RawClient) else app_request(client, 100 + i)
            time.sleep(0.05)  # let the server finish its bookkeeping before its CPU is read
            r["client_cpu_s"], r["server_cpu_s"] = time.process_time() - c0, server.cpu_s() - s0
            rows[name].append(r)
    lib_med = med(rows["library"])
    out = {
        "rounds": rounds,
        "load_avg": loads,
        "library_s": rows["library"],
        "library_median_s": lib_med,
        "library_min_s": min(rows["library"]),
        "library_cpu_s": lib_cpu,
        "library_cpu_median_s": med(lib_cpu),
    }
    for name in apps:
        reqs = rows[name]
        result = med([r["result_s"] for r in reqs])
        full = med([r["full_s"] for r in reqs])
        server_cpu = med([r["server_cpu_s"] for r in reqs])
        out[name] = {
            "requests": reqs,
            "result_median_s": result,
            "result_min_s": min(r["result_s"] for r in reqs),
            "full_median_s": full,
            "server_total_median_s": med([r["timings"].get("total_s", 0.0) for r in reqs]),
            "server_cpu_median_s": server_cpu,
            "client_cpu_median_s": med([r["client_cpu_s"] for r in reqs]),
            "result_ratio": ratio(result, lib_med),
            "result_min_ratio": ratio(min(r["result_s"] for r in reqs), out["library_min_s"]),
            "full_ratio": ratio(full, lib_med),
            "server_cpu_ratio": ratio(server_cpu, out["library_cpu_median_s"]),
        }
    return out


# ----- (b) one busy competitor ------------------------------------------------------------------------------


def busy(lib: Library, client, per_block: int, blocks: int = 2) -> dict:
    """Idle and busy blocks, alternating; in each, library edits and app requests alternating."""
    data = {"idle": {"library": [], "app": [], "load": []}, "busy": {"library": [], "app": [], "load": []}}
    seed = 200
    for _ in range(blocks):
        for state in ("idle", "busy"):
            ctx = busy_process() if state == "busy" else contextlib.nullcontext()
            with ctx:
                data[state]["load"].append(load_average())
                for _ in range(per_block):
                    seed += 1
                    data[state]["library"].append(lib.edit(seed))
                    data[state]["app"].append(app_request(client, seed)["result_s"])
    out = {"per_block": per_block, "blocks": blocks, "raw": data}
    for side in ("library", "app"):
        idle, hot = med(data["idle"][side]), med(data["busy"][side])
        out[side] = {"idle_median_s": idle, "busy_median_s": hot, "ratio": ratio(hot, idle)}
    return out


# ----- (c) throughput ---------------------------------------------------------------------------------------


def library_throughput(lib: Library, batches=(1, 2, 4, 8), runs: int = 2) -> dict:
    """Images/s of the library's batched calls (the fastest of `runs` calls per batch size)."""
    rows = []
    for b in batches:
        loads, times = [load_average()], [lib.edit(300 + i, num_images=b) for i in range(runs)]
        t = min(times)
        rows.append({"batch": b, "best_s": t, "images_per_s": b / t, "load_avg": loads[0]})
    best = max(rows, key=lambda r: r["images_per_s"])
    return {"rows": rows, "best_images_per_s": best["images_per_s"], "best_batch": best["batch"]}


def closed_loop(clients: list, n: int) -> dict:
    """Each client a visitor on its own thread, sending `n` requests one after the other, all started together."""
    lat: list[float] = []
    batched: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(len(clients))

    def visitor(client, u: int) -> None:
        start.wait()
        for k in range(n):
            t0 = time.perf_counter()
            out = client.predict(**edit_args(GUIDE, None, {**SETTINGS, "seed": 1000 * u + k}), api_name="/edit")
            with lock:
                lat.append(time.perf_counter() - t0)
                batched.append(out[3].get("batched_requests", 1))

    t0 = time.perf_counter()
    ts = [threading.Thread(target=visitor, args=(c, u), daemon=True) for u, c in enumerate(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    wall = time.perf_counter() - t0
    return {
        "requests": len(lat),
        "wall_s": wall,
        "requests_per_s": len(lat) / wall,
        "p50_s": pct(lat, 0.5),
        "p95_s": pct(lat, 0.95),
        "mean_requests_per_forward": statistics.mean(batched) if batched else None,
    }


def app_throughput(lib: Library, urls: dict[str, str], users_list=(1, 4, 16), per_user=None) -> dict:
    """Closed-loop visitors (each its own client and thread): requests/s and latency per number of visitors,
    for each app in turn (alternating which goes first), with the library's batched throughput measured
    before every block and after the last. Each block's ratio is to the best library figure measured next to
    it (just before or just after), so that a change in the machine's load hits both sides alike."""
    from gradio_client import Client

    per_user = per_user or {1: 8, 4: 6, 16: 3}
    # the clients share the 2 cores with the server: without certificate loading (plain HTTP to 127.0.0.1
    # has no TLS) each request costs the client ~0.05 s of CPU instead of ~0.3 s (measured in part (a))
    n = max(users_list)
    clients = {
        name: [Client(url, verbose=False, download_files=False, ssl_verify=False) for _ in range(n)]
        for name, url in urls.items()
    }
    rows: dict[str, list[dict]] = {name: [] for name in urls}
    names = list(urls)
    library = [library_throughput(lib)]
    for i, users in enumerate(users_list):
        for name in names if i % 2 == 0 else names[::-1]:
            row = {"users": users, "load_avg": load_average()}
            c0 = time.process_time()
            row.update(closed_loop(clients[name][:users], per_user[users]), load_avg_end=load_average())
            row["client_cpu_s_per_request"] = (time.process_time() - c0) / max(1, row["requests"])
            rows[name].append(row)
        library.append(library_throughput(lib))
        nearby = max(library[-2]["best_images_per_s"], library[-1]["best_images_per_s"])
        for name in names:
            rows[name][-1]["library_best_nearby"] = nearby
            rows[name][-1]["ratio_to_library_best"] = rows[name][-1]["requests_per_s"] / nearby
    best = max(library, key=lambda m: m["best_images_per_s"])
    return {"rows": rows, "library": library, "library_best": best}


# ----- breakdown --------------------------------------------------------------------------------------------


def breakdown_in_process(rounds: int) -> dict:
    """`run_edit` in this process (no server): unbatched and batched, with and without the animation, next to
    the library; then the deferred work alone (GIF, PNG files)."""
    from sdedit.studio import jobs, progress

    settings = jobs.EditSettings(**SETTINGS)
    lib = Library()
    cases = {
        "library pipe(...)": lambda i: lib.edit(i),
        "run_edit unbatched, animation recorded": lambda i: jobs.run_edit(GUIDE, None, _seed(settings, i), batch=False),
        "run_edit unbatched, no animation": lambda i: jobs.run_edit(
            GUIDE, None, _seed(settings, i), batch=False, animate=False
        ),
        "run_edit through the batcher, animation recorded": lambda i: jobs.run_edit(GUIDE, None, _seed(settings, i)),
    }
    for fn in cases.values():
        fn(0)  # warm
    times: dict[str, list[float]] = {name: [] for name in cases}
    gif_s, png_s, loads = [], [], []
    before = dict(progress.WORK)
    for i in range(rounds):
        loads.append(load_average())
        for name, fn in cases.items():
            t0 = time.perf_counter()
            r = fn(i)
            times[name].append(time.perf_counter() - t0)
            if name == "run_edit through the batcher, animation recorded":
                t0 = time.perf_counter()
                path = r.animation
                gif_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                files = r.png_files()
                png_s.append(time.perf_counter() - t0)
                path.unlink(missing_ok=True)
                for f in files:
                    f.unlink(missing_ok=True)
            elif hasattr(r, "pending_animation") and r.pending_animation is not None:
                r.pending_animation = None  # never rendered: nothing to clean up
    work = {k: progress.WORK[k] - before.get(k, 0) for k in progress.WORK}
    return {
        "load_avg": loads,
        "median_s": {name: med(v) for name, v in times.items()},
        "deferred_gif_median_s": med(gif_s),
        "deferred_png_median_s": med(png_s),
        "animation_work": work,
    }


def _seed(settings, i: int):
    from dataclasses import replace

    return replace(settings, seed=i)


def gradio_profile(url: str) -> dict:
    """Medians of Gradio's per-phase traces of /edit since the last clear (GRADIO_PROFILING=1 on the server)."""
    import httpx

    traces = [t for t in httpx.get(f"{url}/gradio_api/profiling/traces").json() if t["fn_name"] != "gradio_file_upload"]
    summary = httpx.get(f"{url}/gradio_api/profiling/summary").json()
    keys = [k for k in (traces[0] if traces else {}) if k.endswith("_ms") or k == "n_iterations"]
    out = {k: med([t[k] for t in traces]) for k in keys}
    out = {k: v for k, v in out.items() if v}
    out["upload_ms"] = summary.get("upload", {}).get("p50")
    out["count"] = len(traces)
    return out


def clear_profile(url: str) -> None:
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{url}/gradio_api/profiling/clear")


# ----- the run ----------------------------------------------------------------------------------------------


def conditions() -> dict:
    import torch

    return {
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu_count": os.cpu_count(),
        "load_avg": load_averages(),
        "policy": threads.describe(POLICY),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


def run(parts: tuple[str, ...], rounds: int, baseline: Path | None) -> dict:
    from gradio_client import Client

    report: dict = {"conditions_start": conditions(), "settings": SETTINGS, "targets": TARGETS}
    if "breakdown" in parts:
        report["breakdown_in_process"] = breakdown_in_process(max(3, rounds // 2))
    lib = Library()
    env = server_env()
    with contextlib.ExitStack() as stack:
        servers = {"app": stack.enter_context(Server(env))}
        if baseline is not None:
            servers["baseline app"] = stack.enter_context(Server(env, repo=baseline))
        clients = {name: Client(s.url, verbose=False) for name, s in servers.items()}
        for name, client in clients.items():
            app_request(client, 0)  # the first request after launch is not the steady state
            clear_profile(servers[name].url)
        if "latency" in parts or "breakdown" in parts:
            # three ways in: gradio_client as it comes; gradio_client without certificate checks (its fresh
            # httpx clients, four or five per request, then skip loading the CA bundle: plain HTTP here has no
            # TLS); plain HTTP on one kept connection, as the page does
            visitors = {}
            for name, s in servers.items():
                visitors[f"{name}, gradio_client"] = (clients[name], s)
                visitors[f"{name}, gradio_client ssl_verify=False"] = (
                    Client(s.url, verbose=False, ssl_verify=False),
                    s,
                )
                visitors[f"{name}, plain HTTP"] = (RawClient(s.url), s)
            report["latency"] = latency(lib, visitors, rounds)
            report["gradio_profile"] = {name: gradio_profile(s.url) for name, s in servers.items()}
        if "busy" in parts:
            report["busy"] = busy(lib, clients["app"], max(2, rounds // 2))
        if "throughput" in parts:
            tp = app_throughput(lib, {name: s.url for name, s in servers.items()})
            report["library_throughput"] = tp["library_best"]
            report["library_throughput_runs"] = tp["library"]
            report["app_throughput"] = tp["rows"]["app"]
            if "baseline app" in tp["rows"]:
                report["baseline_throughput"] = tp["rows"]["baseline app"]
    report["conditions_end"] = conditions()
    return report


# ----- the document -----------------------------------------------------------------------------------------


def _f(x, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _met(value: float | None, target: float) -> str:
    if value is None:
        return "–"
    return "**met**" if value <= target else "**missed**"


INTRO = (
    "Measured {time} by `python -m benchmarks.app_speed` on {cpu_count} CPU cores ({load}), torch {torch}, Python "
    "{python}; thread policy in both processes: `{policy}`. The edit: the app's default on the embedded model "
    "(strokes-heart.png, t0 = {strength}, DPM-Solver++ N = {steps}, {evaluations} evaluations, 1 sample); the library "
    "call gets the "
    "same file."
)
LATENCY = (
    "**(a) One visitor** ({rounds} rounds, each a library call then one request per app; load average "
    "{load_lo:.1f}-{load_hi:.1f}). Library: median **{library} s**, fastest {library_min} s, CPU {library_cpu} s "
    "per edit."
)
LATENCY_HEAD = (
    "app, way in",
    "results arrive: median s",
    "÷ library",
    "fastest ÷ fastest",
    "done, with the animation",
    "÷ library",
    "server CPU s",
    "÷ library CPU",
    "client CPU s",
    "target ≤ 1.3× (results, median)",
)
PROFILE = (
    "Gradio's own profile of those requests (`GRADIO_PROFILING=1`, medians in ms; a generator's phases add up over "
    "its outputs):"
)
BUSY = (
    '**(b) Beside one busy process** (`python -c "while True: pass"`, started by the benchmark; {blocks} idle and '
    "{blocks} busy blocks of {per_block} library + app edits each, alternating; load average idle {idle_lo}-{idle_hi}, "
    "busy {busy_lo}-{busy_hi}):"
)
BUSY_HEAD = ("side", "idle median s", "busy median s", "busy ÷ idle", "target ≤ 3×")
THROUGHPUT = (
    "**(c) Throughput.** The library's batched calls (the fastest of 2 per batch size), measured before each block "
    "of visitors and after the last ({times} times): best {runs} images/s; the best of all **{best} images/s** "
    "(batch {best_batch}). Each block's ratio is to the best library figure measured next to it (just before or "
    "after)."
)
THROUGHPUT_HEAD = (
    "visitors",
    "load avg",
    "requests",
    "requests/s",
    "library best nearby",
    "÷ library",
    "p50 s",
    "p95 s",
    "requests per forward",
)
BREAKDOWN = "**In this process, no server** ({rounds} rounds, load average {load_lo:.1f}-{load_hi:.1f}; medians):"


def _table(head: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def _latency_part(lat: dict) -> list[str]:
    rows = [
        [
            name,
            _f(row["result_median_s"]),
            f"**{_f(row['result_ratio'])}×**",
            f"{_f(row.get('result_min_ratio'))}×",
            _f(row["full_median_s"]),
            f"{_f(row['full_ratio'])}×",
            _f(row.get("server_cpu_median_s")),
            f"{_f(row.get('server_cpu_ratio'))}×",
            _f(row.get("client_cpu_median_s")),
            _met(row["result_ratio"], TARGETS["latency"]),
        ]
        for name, row in lat.items()
        if isinstance(row, dict) and "result_median_s" in row
    ]
    intro = LATENCY.format(
        rounds=lat["rounds"],
        load_lo=min(lat["load_avg"]),
        load_hi=max(lat["load_avg"]),
        library=_f(lat["library_median_s"]),
        library_min=_f(lat.get("library_min_s")),
        library_cpu=_f(lat.get("library_cpu_median_s")),
    )
    return [intro, "", *_table(LATENCY_HEAD, rows)]


def _profile_part(prof: dict) -> list[str]:
    order = ["upload_ms", "queue_wait_ms", "preprocess_ms", "fn_call_ms", "postprocess_ms", "total_ms"]
    keys = order + sorted({k for p in prof.values() for k in p if k.endswith("_ms")} - set(order))
    rows = [[k[:-3], *(_f(p.get(k), 1) for p in prof.values())] for k in keys]
    return [PROFILE, "", *_table(("phase", *prof), rows)]


def _busy_part(bz: dict) -> list[str]:
    raw = bz["raw"]
    intro = BUSY.format(
        blocks=bz["blocks"],
        per_block=bz["per_block"],
        idle_lo=_f(min(raw["idle"]["load"]), 1),
        idle_hi=_f(max(raw["idle"]["load"]), 1),
        busy_lo=_f(min(raw["busy"]["load"]), 1),
        busy_hi=_f(max(raw["busy"]["load"]), 1),
    )
    rows = [
        [
            side,
            _f(bz[side]["idle_median_s"]),
            _f(bz[side]["busy_median_s"]),
            f"**{_f(bz[side]['ratio'])}×**",
            _met(bz[side]["ratio"], TARGETS["busy"]),
        ]
        for side in ("library", "app")
    ]
    return [intro, "", *_table(BUSY_HEAD, rows)]


def _throughput_part(report: dict) -> list[str]:
    lt, at = report["library_throughput"], report["app_throughput"]
    runs = report.get("library_throughput_runs") or [lt]
    intro = THROUGHPUT.format(
        times=len(runs),
        runs="; ".join(
            ", ".join(f"b{r['batch']} {_f(r['images_per_s'])}" for r in m["rows"])
            + f" (load {m['rows'][0]['load_avg']:.1f})"
            for m in runs
        ),
        best=_f(lt["best_images_per_s"]),
        best_batch=lt["best_batch"],
    )
    rows = [
        [
            f"{r['users']}{'' if label == 'app' else ' (baseline app)'}",
            f"{r['load_avg']:.1f}",
            str(r["requests"]),
            _f(r["requests_per_s"]),
            _f(r.get("library_best_nearby")),
            f"**{_f(r['ratio_to_library_best'])}×**",
            _f(r["p50_s"]),
            _f(r["p95_s"]),
            _f(r["mean_requests_per_forward"], 1),
        ]
        for label, rows_ in (("app", at), ("baseline app", report.get("baseline_throughput") or []))
        for r in rows_
    ]
    return [intro, "", *_table(THROUGHPUT_HEAD, rows)]


def _breakdown_part(bd: dict) -> list[str]:
    intro = BREAKDOWN.format(rounds=len(bd["load_avg"]), load_lo=min(bd["load_avg"]), load_hi=max(bd["load_avg"]))
    rows = [[name, _f(v, 3)] for name, v in bd["median_s"].items()]
    rows += [
        ["deferred: the GIF, rendered on first use", _f(bd["deferred_gif_median_s"], 3)],
        ["deferred: the result PNG files", _f(bd["deferred_png_median_s"], 3)],
    ]
    work = ", ".join(f"{k} {v}" for k, v in sorted(bd["animation_work"].items()))
    return [intro, "", *_table(("call", "s"), rows), f"Animation work counted over those runs: {work}."]


def section(report: dict) -> str:
    """docs/performance.md's `app-speed` section from benchmarks/results/app-speed.json: the parts it ran."""
    a, b = report["conditions_start"], report["conditions_end"]
    s = report["settings"]
    edit = dict(strength=s["strength"], steps=s["steps"], evaluations=round(s["strength"] * s["steps"]))
    intro = INTRO.format(load=load_words(a["load_avg"][0], b["load_avg"][0]), **a, **edit)
    lines = [intro, ""]
    if report.get("latency"):
        lines += _latency_part(report["latency"])
    if report.get("gradio_profile"):
        lines += _profile_part(report["gradio_profile"])
    if report.get("busy"):
        lines += _busy_part(report["busy"])
    if report.get("library_throughput") and report.get("app_throughput"):
        lines += _throughput_part(report)
    if report.get("breakdown_in_process"):
        lines += _breakdown_part(report["breakdown_in_process"])
    return "\n".join(lines).rstrip()


def write_doc(report: dict) -> None:
    write_section("app-speed", section(report))


def print_summary(report: dict) -> None:
    lat, bz, at = report.get("latency"), report.get("busy"), report.get("app_throughput")
    print(f"policy: {report['conditions_start']['policy']}; load {report['conditions_start']['load_avg']}")
    if lat:
        print(f"(a) library {_f(lat['library_median_s'])} s, CPU {_f(lat.get('library_cpu_median_s'))} s")
        for name, row in lat.items():
            if isinstance(row, dict) and "result_ratio" in row:
                print(
                    f"    {name}: results {_f(row['result_median_s'])} s = {_f(row['result_ratio'])}x the library "
                    f"(target <= {TARGETS['latency']}x; fastest/fastest {_f(row.get('result_min_ratio'))}x); done "
                    f"with animation {_f(row['full_median_s'])} s = {_f(row['full_ratio'])}x; server CPU "
                    f"{_f(row.get('server_cpu_median_s'))} s = {_f(row.get('server_cpu_ratio'))}x the library's, "
                    f"client CPU {_f(row.get('client_cpu_median_s'))} s"
                )
    if bz:
        for side in ("library", "app"):
            r = bz[side]
            print(
                f"(b) {side}: idle {_f(r['idle_median_s'])} s, busy {_f(r['busy_median_s'])} s, busy/idle "
                f"{_f(r['ratio'])}x (target <= {TARGETS['busy']}x)"
            )
    if at:
        lt = report["library_throughput"]
        print(f"(c) library best {_f(lt['best_images_per_s'])} images/s (batch {lt['best_batch']})")
        for label, rows in (("app", at), ("baseline app", report.get("baseline_throughput") or [])):
            for r in rows:
                print(
                    f"    {label}, {r['users']} visitor(s): {_f(r['requests_per_s'])} requests/s = "
                    f"{_f(r['ratio_to_library_best'])}x; p50 {_f(r['p50_s'])} s; "
                    f"{_f(r['mean_requests_per_forward'], 1)} requests per forward"
                )
    print(f"load average at the end: {report['conditions_end']['load_avg']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="latency,busy,throughput,breakdown")
    parser.add_argument("--rounds", type=int, default=10, help="one-visitor rounds (busy blocks: half as many)")
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout's app, measured alongside")
    parser.add_argument("--no-docs", action="store_true", help="don't rewrite the docs' section")
    parser.add_argument("--out", type=Path, default=RESULTS / "app-speed.json")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    report = run(parts, args.rounds, args.baseline)
    write_json(report, args.out)
    print_summary(report)
    if not args.no_docs:
        write_doc(report)
        print(f"wrote {args.out} and the app-speed section of docs/performance.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
