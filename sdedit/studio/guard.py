"""Guards for a public server: request size, out-of-memory recovery, and plain words for rejected values.

Nothing here knows Gradio: the body-size limit is a plain ASGI middleware, and the rest are functions that
the studio and the app call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import torch

from ..errors import InputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

IMAGE_FORMATS = "PNG, JPEG, WebP, GIF, BMP or TIFF"


# ----- request size ------------------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuse HTTP requests whose body is larger than a limit, with 413 and a one-line JSON reason.

    Uploads (paths ending in one of `upload_paths`) get `upload_bytes`, everything else `max_bytes`: the API's
    JSON carries file references, not files, so a large JSON body is either a mistake or an attack (an image
    inlined as a data: URL would be decoded without our limits). Content-Length is checked before the body is
    read; a chunked body is counted as it streams.
    """

    def __init__(self, app, max_bytes: int, upload_bytes: int, upload_paths: tuple[str, ...] = ("/upload",)):
        self.app, self.upload_paths = app, upload_paths
        self.max_bytes, self.upload_bytes = int(max_bytes), int(upload_bytes)

    def limit_for(self, path: str) -> int:
        return self.upload_bytes if path.rstrip("/").endswith(self.upload_paths) else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await self._refuse(send, declared, limit)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, seen, limit)

    @staticmethod
    async def _refuse(send: Send, size: int, limit: int) -> None:
        body = json.dumps(
            {"detail": f"the request is too large ({size / 1e6:.1f} MB); at most {limit / 1e6:.0f} MB is accepted"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


# ----- out of memory -----------------------------------------------------------------------------------------

_OOM_WORDS = ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError, or a RuntimeError/MemoryError that says the same (CUDA, MPS, the CPU allocator)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc).lower() for w in _OOM_WORDS)


def free_memory() -> None:
    """Return what a failed forward held: Python garbage first (it owns the tensors), then the CUDA cache."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


# ----- native memory ----------------------------------------------------------------------------------------
# Measured on the app under 16 concurrent users (docs/reliability.md): glibc's in-use heap stayed flat
# (~236 MB) while its free-but-kept heap grew and wandered (190 -> 250 MB), so RSS crept up round after round.
# That is fragmentation, not a leak: malloc_trim(0) gave back ~190 MB at once. The server therefore caps the
# arenas at start-up and trims after each batch. Both are no-ops without glibc (macOS, Windows, musl).


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (each allocating thread otherwise gets its own, up to 8 per core, and freed
    blocks scattered over many arenas are rarely returned). As MALLOC_ARENA_MAX=2, set from Python so that
    `python app.py` needs no wrapper. Call it before the server's threads start."""
    libc = _glibc()
    m_arena_max = -8  # from glibc's malloc.h
    return bool(libc is not None and libc.mallopt(m_arena_max, int(arenas)))


def trim_malloc() -> bool:
    """Give glibc's free heap pages back to the system (malloc_trim): keeps a server's RSS flat between
    batches. Measured: ~0.15 ms with little to return, 10-14 ms returning ~250 MB; True when memory was returned."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


# ----- values a form refused ---------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _shown(value: Any, width: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= width else shown[: width - 3] + "..."


def _as_number(value: Any) -> int | float | None:
    """A number, or a string that spells one (JSON clients send both); None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and len(value) <= 100:
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return None


def slips_past_a_range_check(value: Any, integer: bool = False) -> bool:
    """A form's number that a range check lets through or rounds away: a bool, NaN (it compares false with both
    ends of any range), an infinity, or a fraction where a whole number is asked."""
    if isinstance(value, bool):
        return True
    if not isinstance(value, float):
        return False
    return not math.isfinite(value) or (integer and not value.is_integer())


def checked_number(value: Any, name: str, lo: float, hi: float, whole: bool = False, lo_open: bool = False):
    """`value` (a number, or a string that spells one) as an int (`whole`) or a float in [lo, hi] ((lo, hi] with
    `lo_open`), else an InputError that names it, the range and the value. A huge integer is compared as it is
    (never an OverflowError); NaN, infinities and bools are refused."""
    what = "a whole number" if whole else "a number"
    span = f"in ({_fmt(lo)}, {_fmt(hi)}]" if lo_open else f"from {_fmt(lo)} to {_fmt(hi)}"
    number = _as_number(value)
    ok = number is not None and (isinstance(number, int) or math.isfinite(number))
    ok = ok and (not whole or isinstance(number, int) or number.is_integer())
    ok = ok and (lo < number if lo_open else lo <= number) and number <= hi
    if not ok:
        raise InputError(f"{name} must be {what} {span}, not {_shown(value, 40)}")
    return int(number) if whole else float(number)


def explain_rejected_value(
    kind: str,
    value: Any,
    exc: BaseException,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    max_megapixels: float | None = None,
) -> str:
    """What was wrong with a value a component could not read, and what is allowed, in one sentence.

    kind: "image", "number", "text", or anything else (a generic sentence).
    """
    shown = _shown(value)
    if kind == "image":
        name = type(exc).__name__
        if "DecompressionBomb" in name:
            limit = f"; at most {max_megapixels:g} MP is accepted" if max_megapixels else ""
            return f"the image is too large to decode safely{limit}"
        if name == "UnidentifiedImageError":
            return f"the file is not an image this app can read ({IMAGE_FORMATS})"
        return f"the image could not be read ({name}); send a {IMAGE_FORMATS} file"
    if kind == "number":
        what = "a whole number" if integer else "a number"
        if minimum is not None and maximum is not None:
            what += f" from {_fmt(minimum)} to {_fmt(maximum)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{shown} is not allowed: expected {what}"
        return f"expected {what}, not {shown}"
    if kind == "text":
        return f"expected text, not {shown}"
    return f"{shown} is not a valid value ({type(exc).__name__})"
