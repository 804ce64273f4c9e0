"""What every benchmark shares: the app as a server, the machine's load and a process's CPU and memory, one busy
process to compete with, and publishing: a results file under benchmarks/results/ and its section of a page.

A section is what lies between `<!-- key:begin -->` and `<!-- key:end -->` (`sdedit.lab.records`, whose
registry says which page holds which key and from which results file it is rendered). No torch here: the app
and live benchmarks import this before their thread policy is applied (torch reads it when it loads).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sdedit.lab import records

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
EX = REPO / "examples"
PERFORMANCE_DOC = REPO / "docs" / "performance.md"

# Removed from the server's environment: the app's thread policy decides (Server(env=...) can still set them).
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SDEDIT_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


# ----- the machine ------------------------------------------------------------------------------------------


def load_average() -> float | None:
    """The 1-minute load average (None where there is none): what else ran while a number was measured."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def load_averages() -> list[float]:
    """The 1-, 5- and 15-minute load averages ([] where there are none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    """Where a number was measured, without loading torch: cores this process may use, the CPU, versions."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch_version,
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc (no psutil needed)."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def cpu_seconds(pid: int | str = "self") -> float:
    """CPU seconds a process has used (all its threads, user + system), from /proc/<pid>/stat."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


@contextlib.contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """One competing busy process (`python -c "while True: pass"`) for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def load_words(start: float | None, end: float | None) -> str:
    """'load average 1.6 at the start, 2.2 at the end', and what a load means for the times measured beside it."""
    if start is None or end is None:
        return "load average not recorded"
    words = f"load average {start:.1f} at the start, {end:.1f} at the end"
    if max(start, end) >= 0.5:
        words += ": other work shared the CPU, so the times are upper bounds"
    return words


# ----- the app as a server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """`python app.py` (of `repo`) on a free port of 127.0.0.1, with its own temp dir; stopped by `stop()`.

    The app's thread policy chooses its threads: THREAD_VARS are removed from its environment (`env` may set
    them again). Its memory (VmRSS) is sampled every 0.25 s while it runs."""

    env: dict = field(default_factory=dict)
    repo: Path = REPO
    proc: subprocess.Popen | None = None
    url: str = ""
    startup_s: float = 0.0
    tmp: Path | None = None
    samples: list[tuple[float, float]] = field(default_factory=list)
    _sampling: threading.Event = field(default_factory=threading.Event)

    def start(self, timeout: float = 240) -> Server:
        import httpx

        self.tmp = Path(tempfile.mkdtemp(prefix="sdedit-load-"))
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if k not in THREAD_VARS},
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "GRADIO_TEMP_DIR": str(self.tmp / "gradio"),
            **{k: str(v) for k, v in self.env.items()},
        }
        log = open(self.tmp / "server.log", "w")  # noqa: SIM115 (closed with the process)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--host", "127.0.0.1"],
            cwd=self.repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{port}"
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/gradio_api/info", timeout=2).status_code == 200:
                    self.startup_s = time.perf_counter() - t0
                    threading.Thread(target=self._sample, daemon=True).start()
                    return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"the app did not answer within {timeout} s")

    def _sample(self) -> None:
        while not self._sampling.is_set() and self.proc is not None and self.proc.poll() is None:
            self.samples.append((time.monotonic(), rss_mb(self.proc.pid)[0]))
            self._sampling.wait(0.25)

    def cpu_s(self) -> float:
        """CPU seconds the server has used (all its threads, user + system)."""
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def rss(self) -> tuple[float, float]:
        return rss_mb(self.proc.pid) if self.proc else (0.0, 0.0)

    def peak_since(self, t: float) -> float:
        return max((mb for ts, mb in self.samples if ts >= t), default=0.0)

    def log(self) -> str:
        return (self.tmp / "server.log").read_text() if self.tmp else ""

    def stop(self) -> None:
        self._sampling.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ----- publishing -------------------------------------------------------------------------------------------


def write_json(data: dict, path: str | Path) -> Path:
    """Write a results file atomically (a run that dies half-way leaves the last complete one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def write_section(key: str, body: str, page: str | Path | None = None) -> Path:
    """Put `body` in `key`'s section: of its registered page (`sdedit.lab.records.SECTIONS`), else of `page`
    (default docs/performance.md)."""
    registered = [s for s in records.SECTIONS if s.key == key]
    target = REPO / registered[0].page if registered else Path(page or PERFORMANCE_DOC)
    return records.write_section(target, key, body)


def publish(result: dict, json_path: str | Path, body: str, key: str, docs: bool = True) -> None:
    """Save `result` as `json_path`, print its markdown `body`, and (with `docs`) put it in `key`'s section."""
    write_json(result, json_path)
    print(body)
    if docs:
        write_section(key, body)
