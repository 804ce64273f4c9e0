"""Bad input at every entry point, faults, and safety.

Each bad input gets a message that names the problem and what is allowed, never a traceback, and the server
serves the next request. Through the Python API and the CLI (gaps left by test_inputs, test_fuzz and test_cli),
then through gradio_client and raw HTTP against the launched app. Then faults (a model that fails to load,
an out-of-memory forward, a cancelled request) and safety (pickles, paths, files written).
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdedit.studio.guard
from sdedit.configs import REPO_ROOT
from sdedit.errors import InputError, LimitError, ModelLoadError, ModelNotFoundError, SDEditError
from sdedit.studio import examples, jobs, limits, models, progress, ui
from tests.conftest import tiny_vp_unet
from tests.helpers import call_edit as edit_by_position

EX = examples.EXAMPLES_DIR
REPO = REPO_ROOT
QUICK = dict(model="fluent-emoji-64", strength=0.5, sampler="dpmpp", steps=4, repeats=1)  # 2 denoising steps


# ----- image files of every awkward kind -----------------------------------------------------------------------


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo() -> Image.Image:
    return Image.open(EX / "photo-cat.png").convert("RGB")


def _animated_gif() -> bytes:
    frames = [_photo(), _photo().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    return _png(_photo().crop((0, 0, 256, 128)), "JPEG", exif=exif)


def _palette_with_transparency() -> bytes:
    pal = _photo().convert("P")
    return _png(pal, transparency=0)


def _corrupt_png() -> bytes:
    data = bytearray((EX / "strokes-heart.png").read_bytes())
    data[100:400] = bytes(300)  # inside the image data: decodes to garbage unless the CRCs are checked
    return bytes(data)


def _truncated(fmt: str) -> bytes:
    data = _png(_photo(), fmt)
    return data[: len(data) // 2]


# (name, file bytes, expected: ("ok", output size) or ("error", message regex))
IMAGE_CASES = [
    ("truncated-png", lambda: _truncated("PNG"), ("error", r"damaged or truncated")),
    ("truncated-jpeg", lambda: _truncated("JPEG"), ("error", r"damaged or truncated")),
    ("corrupt-png", _corrupt_png, ("error", r"damaged or truncated")),
    (
        "16-bit",
        lambda: _png(Image.fromarray(np.asarray(_photo().convert("L")).astype(np.uint16) * 257)),
        ("ok", (256, 256)),
    ),
    ("cmyk-jpeg", lambda: _png(_photo().convert("CMYK"), "JPEG"), ("ok", (256, 256))),
    ("palette-transparency", _palette_with_transparency, ("ok", (256, 256))),
    ("grayscale", lambda: _png(_photo().convert("L")), ("ok", (256, 256))),
    ("exif-rotated", _exif_rotated, ("ok", (128, 256))),
    ("animated-gif", _animated_gif, ("ok", (256, 256))),
    ("text-file", lambda: b"this is not an image at all", ("error", r"not an image .*PNG, JPEG")),
    ("empty-file", lambda: b"", ("error", r"not an image|damaged|empty")),
    ("1x1", lambda: _png(Image.new("RGB", (1, 1))), ("error", r"1x1; each side must be at least 8")),
    ("20-MP", lambda: _png(Image.new("L", (5000, 4000))), ("error", r"5000x4000 \(20.0 MP\); at most 16 MP")),
    ("bomb-400-MP", lambda: _png(Image.new("1", (20000, 20000))), ("error", r"too large.*at most 16 MP")),
]


def _write(tmp_path: Path, name: str, data: bytes, suffix: str = ".png") -> Path:
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    return path


def _suffix(name: str) -> str:
    return ".gif" if "gif" in name else ".jpg" if "jpeg" in name or "exif" in name else ".png"


@pytest.mark.parametrize(("name", "make", "expected"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_image_files_through_the_python_api(name, make, expected):
    data = make()
    if expected[0] == "ok":
        out = jobs.run_edit(data, None, jobs.EditSettings(seed=0, **QUICK), batch=False, animate=False)
        assert out.images[0].size == expected[1]
        return
    with pytest.raises(SDEditError, match=expected[1]):
        jobs.prepare_edit(data, None, jobs.EditSettings(**QUICK))


def test_masks_and_more_settings_through_the_python_api(vp_pipe):
    guide = np.full((20, 30, 3), 200, np.uint8)
    with pytest.raises(InputError, match="mask is 10x10 but the image is 30x20"):
        vp_pipe(guide, np.ones((10, 10), np.float32), progress=False)
    with pytest.raises(InputError, match="mask is empty"):
        vp_pipe(guide, np.zeros((20, 30), np.float32), progress=False)
    full = vp_pipe(guide, np.ones((20, 30), np.float32), seed=0, num_inference_steps=4, progress=False)
    none = vp_pipe(guide, None, seed=0, num_inference_steps=4, progress=False)
    assert np.abs(np.asarray(full.images[0], int) - np.asarray(none.images[0], int)).max() <= 1
    for kwargs, message in [
        (dict(seed=2**63), "seed"),
        (dict(seed=float("nan")), "seed"),
        (dict(seed=[1, 2]), "2 seeds for 1 samples"),
        (dict(num_images=True), "num_images must be a number"),
        (dict(strength=True), "strength must be a number"),
        (dict(repeats=float("inf")), "finite"),
    ]:
        with pytest.raises(InputError, match=message):
            vp_pipe(guide, progress=False, **kwargs)


# ----- the CLI ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("guide", "extra", "message"),
    [
        ("corrupt", [], "damaged or truncated"),
        ("text", [], "not an image"),
        ("tiny", [], "at least 8 pixels"),
        ("bomb", [], "too large|MP"),
        ("ok", ["--mask", "small-mask"], "same size"),
        ("ok", ["--mask", "empty-mask"], "mask is empty"),
        ("ok", ["--strength", "nan"], "finite"),
        ("ok", ["--steps", "-3"], "from 1 to"),
        ("ok", ["--num", "100000"], "num_images"),
        ("ok", ["--seed", "-1"], "seed"),
        ("ok", ["--sampler", "plms"], "sampler must be one of"),
        ("ok", ["--model", "../no-such-model"], "unknown model"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(tiny_model_dir, tmp_path, capsys, guide, extra, message):
    from sdedit.cli import main

    files = {
        "ok": _png(Image.new("RGB", (24, 32), (200, 100, 50))),
        "corrupt": _truncated("PNG"),
        "text": b"hello",
        "tiny": _png(Image.new("RGB", (2, 2))),
        "bomb": _png(Image.new("1", (20000, 20000))),
        "small-mask": _png(Image.new("L", (12, 10), 255)),
        "empty-mask": _png(Image.new("L", (24, 32), 0)),
    }
    paths = {k: _write(tmp_path, k, v) for k, v in files.items()}
    extra = [str(paths.get(x, x)) for x in extra]
    args = ["edit", "--guide", str(paths[guide]), "--out", str(tmp_path / "out"), "--no-progress", "--steps", "4"]
    if "--model" not in extra:
        args += ["--model", str(tiny_model_dir)]
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.search(message, err, re.IGNORECASE), err


# ----- through the launched app -------------------------------------------------------------------------------


def call_edit(client, guide, mask=None, **overrides):
    return edit_by_position(client, guide, mask, **{**QUICK, **overrides})


def serves_next(client) -> None:
    gallery, *_ = call_edit(client, EX / "strokes-tree.png")
    assert len(gallery) == 1


def expect_app_error(fn, message: str, title: str = "Please check"):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        fn()
    text = err.value.message
    assert re.search(message, text, re.IGNORECASE), text
    assert "Traceback" not in text and 'File "' not in text, text
    if title:
        assert err.value.title == title, (err.value.title, text)
    return err.value


@pytest.mark.parametrize(("name", "make", "expected"), IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_image_files_through_the_api(client, tmp_path, name, make, expected):
    path = _write(tmp_path, name, make(), _suffix(name))
    if expected[0] == "ok":
        gallery, *_ = call_edit(client, path)
        assert Image.open(gallery[0]["image"]).size == expected[1]
    else:
        expect_app_error(lambda: call_edit(client, path), expected[1])
    serves_next(client)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (Image.new("L", (100, 60), 255), r"mask is 100x60 but the image is 256x256"),
        (Image.new("L", (256, 256), 0), r"mask is empty"),
        (Image.new("RGBA", (256, 256), (0, 0, 0, 0)), r"mask is empty"),
        (Image.new("L", (256, 256), 255), None),  # all ones: everything may change
    ],
)
def test_masks_through_the_api(client, tmp_path, mask, message):
    path = tmp_path / "mask.png"
    mask.save(path)
    if message is None:
        gallery, *_ = call_edit(client, EX / "strokes-heart.png", path)
        assert Image.open(gallery[0]["image"]).size == (256, 256)
    else:
        expect_app_error(lambda: call_edit(client, EX / "strokes-heart.png", path), message)
    serves_next(client)


SETTINGS_CASES = [
    (dict(strength=0.0), r"strength: Value 0.0 is less than minimum value 0.05"),
    (dict(strength=1.5), r"strength: .*greater than maximum value 1"),
    (dict(strength=-1), r"strength: .*less than minimum"),
    (dict(strength="high"), r"strength: expected a number from 0.05 to 1, not 'high'"),
    (dict(strength=None), r"strength: expected a number"),
    (dict(steps=0), r"steps: .*less than minimum value 1"),
    (dict(steps=10**6), r"steps: .*greater than maximum value 1000"),
    (dict(steps="ten"), r"steps: expected a whole number from 1 to 1000"),
    (dict(repeats=99), r"repeats: .*greater than maximum value 5"),
    (dict(num_samples=0), r"num_samples: .*less than minimum value 1"),
    (dict(num_samples=500), r"num_samples: .*greater than maximum value 8"),
    (dict(seed=-7), r"seed must be from 0 to"),
    (dict(seed=2**70), r"seed must be from 0 to"),
    (dict(seed="lucky"), r"seed: expected a whole number"),
    (dict(seed=[1, 2]), r"seed: expected a whole number"),
    (dict(mask_feather=1e9), r"mask_feather: .*greater than maximum value 32"),
    (dict(snr=-1), r"snr: .*less than minimum value 0"),
    (dict(strength=1.0, steps=1000, repeats=5, num_samples=8), r"40,000 network evaluations.*at most 20,000"),
    (dict(sampler="plms"), r"sampler: .*not in the list of choices"),
    (dict(sampler=7), r"sampler: .*not in the list of choices"),
    (dict(model="no-such-model"), r"model: .*not in the list of choices: \['fluent-emoji-64'"),
    (dict(model="../models/fluent-emoji-64"), r"model: .*not in the list of choices"),
    (dict(model="models/fluent-emoji-64"), r"model: .*not in the list of choices"),
    (dict(model="/etc/passwd"), r"model: .*not in the list of choices"),
    (dict(model="google/ddpm-church-256"), r"model: .*not in the list of choices"),
]


@pytest.mark.parametrize(("overrides", "message"), SETTINGS_CASES, ids=[str(c[0])[:40] for c in SETTINGS_CASES])
def test_settings_through_the_api(client, overrides, message):
    expect_app_error(lambda: call_edit(client, EX / "strokes-heart.png", **overrides), message)
    serves_next(client)


def test_the_gr_error_text_is_exactly_the_librarys_message(client, tmp_path):
    """What the user reads is the library's own sentence, capitalised, with a title, and nothing else."""
    mask = tmp_path / "empty.png"
    Image.new("L", (256, 256), 0).save(mask)
    with pytest.raises(InputError) as direct:
        jobs.prepare_edit(EX / "strokes-heart.png", Image.open(mask), jobs.EditSettings(**QUICK))
    err = expect_app_error(lambda: call_edit(client, EX / "strokes-heart.png", mask), "mask is empty")
    assert err.message == ui.user_message(direct.value)
    err = expect_app_error(
        lambda: call_edit(client, EX / "strokes-heart.png", model="ddpm-church-256"),
        r"can't be reached|offline",
        title="Model unavailable",
    )
    assert "hf download google/ddpm-church-256" in err.message


def raw_call(url: str, api: str, data=None, body: str | None = None) -> tuple[str, object]:
    """The REST API without gradio_client (which refuses to send NaN and uploads local paths itself)."""
    import httpx

    content = body if body is not None else json.dumps({"data": data})
    r = httpx.post(f"{url}/gradio_api/call/{api}", content=content, headers={"content-type": "application/json"})
    if r.status_code != 200:
        return f"http {r.status_code}", r.json().get("detail")
    event_id = r.json()["event_id"]
    with httpx.stream("GET", f"{url}/gradio_api/call/{api}/{event_id}", timeout=120) as stream:
        text = "".join(stream.iter_text())
    kind = re.findall(r"^event: (\w+)", text, re.M)[-1]
    payload = json.loads(re.findall(r"^data: (.*)$", text, re.M)[-1])
    return kind, payload


def _upload(url: str, path: Path) -> dict:
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(f"{url}/gradio_api/upload", files={"files": f})
    r.raise_for_status()
    return {"path": r.json()[0], "meta": {"_type": "gradio.FileData"}}


def test_raw_http_nan_paths_and_sizes(app_url, client, tmp_path):
    import base64

    import httpx

    guide = _upload(app_url, EX / "strokes-heart.png")
    # raw HTTP sends every input: the optional ones last (strength_map None; fill_outlines, auto_strength, rank false)
    args = [guide, None, "fluent-emoji-64", 0.5, "dpmpp", 4, 1, 1, 0, 0.0, 0, 0, None, False, False, False]
    kind, out = raw_call(app_url, "edit", args)
    assert kind == "complete" and len(out[0]) == 1
    body = json.dumps({"data": args})
    nan_strength = body.replace('"fluent-emoji-64", 0.5', '"fluent-emoji-64", NaN')
    assert raw_call(app_url, "edit", body=nan_strength) == (
        "error",
        {
            "error": "strength: nan is not allowed: expected a number from 0.05 to 1",
            "duration": 10,
            "visible": True,
            "title": "Please check",
        },
    )
    for literal in ("NaN", "Infinity", "-Infinity"):
        bad_seed = body.replace(", 0, 0.0, 0, 0, null,", f", {literal}, 0.0, 0, 0, null,")
        kind, out = raw_call(app_url, "edit", body=bad_seed)
        assert kind == "error" and re.match(r"seed: -?(nan|inf) is not allowed: expected a whole number", out["error"])
    # files the server has but the client did not upload: refused by Gradio, never read
    for path in (
        "/etc/passwd",
        str(REPO / "models" / "fluent-emoji-64" / "model_index.json"),
        str(EX / "photo-cat.png"),
    ):
        kind, out = raw_call(app_url, "edit", [{"path": path, "meta": {"_type": "gradio.FileData"}}, *args[1:]])
        assert kind == "error" and "not uploaded by a user" in out["error"], out
    kind, out = raw_call(app_url, "edit", ["not a file", *args[1:]])
    assert kind == "error" and "ImageData" in out["error"] and "Traceback" not in out["error"]
    # request size: JSON bodies (an inlined data: URL) and uploads
    big = "data:image/png;base64," + base64.b64encode(os.urandom(5_000_000)).decode()
    kind, detail = raw_call(app_url, "edit", [{"url": big, "meta": {"_type": "gradio.FileData"}}, *args[1:]])
    assert kind == "http 413" and re.fullmatch(
        r"the request is too large \(6\.\d MB\); at most 4 MB is accepted", detail
    )
    small_bomb = "data:image/png;base64," + base64.b64encode(_png(Image.new("1", (20000, 20000)))).decode()
    kind, out = raw_call(app_url, "edit", [{"url": small_bomb, "meta": {"_type": "gradio.FileData"}}, *args[1:]])
    assert kind == "error" and "at most 16 MP" in out["error"]
    huge = tmp_path / "huge.bin"
    huge.write_bytes(os.urandom(26_000_000))
    with open(huge, "rb") as f:
        r = httpx.post(f"{app_url}/gradio_api/upload", files={"files": f})
    assert r.status_code == 413 and "25000000 bytes" in r.text
    with pytest.raises(ValueError, match="exceeds the maximum file size of 25000000 bytes"):
        call_edit(client, huge)
    serves_next(client)


def test_raw_http_clients_of_earlier_versions_still_work(app_url):
    """A client that sends /edit's and /sweep's inputs as they were before optional ones were appended (no
    strength map, no fill_outlines) gets the same answer as one that sends them; a missing required one is refused."""
    guide = _upload(app_url, EX / "strokes-heart.png")
    edit = [guide, None, "fluent-emoji-64", 0.5, "dpmpp", 4, 1, 1, 0, 0.0, 0, 0]  # the first 12 inputs, seed 0
    results = {}
    for extra in ([], [None], [None, False]):
        kind, out = raw_call(app_url, "edit", [*edit, *extra])
        assert kind == "complete", out
        results[len(extra)] = out[0][0]["caption"], tuple(out[3]["seeds"])
    assert len(set(results.values())) == 1
    kind, out = raw_call(app_url, "edit", edit[:-1])  # mask_feather is not optional
    assert kind != "complete"
    sweep = [guide, None, "fluent-emoji-64", "0.3", "dpmpp", 4, 1, 0, 0.0, 0, 0]
    assert raw_call(app_url, "sweep", sweep)[0] == "complete"


def test_sweep_composite_and_painting_refuse_bad_input_clearly(app_url, client):
    guide = _upload(app_url, EX / "strokes-heart.png")
    sweep = [guide, None, "fluent-emoji-64", "0.2, 0.6", "dpmpp", 4, 1, 0, 0.0, 0, 0, None, False]  # no map, no fill
    for strengths, message in [
        ("0.5," * 100, "at most 200"),
        ("a, b", "numbers separated by commas"),
        ("0, 2", "(0, 1]"),
    ]:
        kind, out = raw_call(app_url, "sweep", [*sweep[:3], strengths, *sweep[4:]])
        assert kind == "error" and message in out["error"], out
    kind, out = raw_call(app_url, "composite", [guide, None, 0.5, 0.5, 0.3, True])
    assert kind == "error" and "patch" in out["error"]
    kind, out = raw_call(app_url, "composite", [guide, guide, 5, 0.5, 0.3, True])
    assert kind == "error" and out["error"] == "x: Value 5 is greater than maximum value 1."
    bomb = Path(tempfile.mkdtemp()) / "bomb.png"
    bomb.write_bytes(_png(Image.new("1", (20000, 20000))))
    kind, out = raw_call(app_url, "painting", [_upload(app_url, bomb), 4, 0, 1])
    assert kind == "error" and "at most 16 MP" in out["error"], out
    kind, out = raw_call(app_url, "sweep", sweep)
    assert kind == "complete"


# Every number the studio reads from a request, with values no control sends: each gets words that name it,
# never an HTTP error or an apology. Positions are the endpoints' positional inputs (docs/app.md).
EDIT_NUMBERS = {"strength": 3, "steps": 5, "repeats": 6, "num_samples": 7, "seed": 8, "snr": 9}
EDIT_NUMBERS |= {"mask_dilation": 10, "mask_feather": 11}
SWEEP_NUMBERS = {"steps": 5, "repeats": 6, "seed": 7, "snr": 8, "mask_dilation": 9, "mask_feather": 10}
NOT_NUMBERS = [10**40, -(10**40), -5, 1.5, "abc", True, [1]]  # 1.5: every field here is whole or at most 1
NOT_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1" + "0" * 400]  # raw JSON only (gradio_client refuses them)


def _words_for(name: str, message: str) -> None:
    said = name.replace("_", " ") if name.startswith("mask") else name
    assert re.search(rf"{name}|{said}", message, re.IGNORECASE), message
    assert "Traceback" not in message and "went wrong" not in message, message


@pytest.mark.parametrize("name", list(EDIT_NUMBERS))
def test_every_number_of_edit_gets_words_for_values_no_control_sends(app_url, client, name):
    for value in NOT_NUMBERS:
        err = expect_app_error(lambda value=value: call_edit(client, EX / "strokes-heart.png", **{name: value}), ".")
        _words_for(name, err.message)
    edit = [None, None, "fluent-emoji-64", 0.5, "dpmpp", 4, 1, 1, 0, 0.0, 0, 0, None, False]
    sweep = [None, None, "fluent-emoji-64", "0.2, 0.6", "dpmpp", 4, 1, 0, 0.0, 0, 0, None, False]
    for api, args, where in (("edit", edit, EDIT_NUMBERS), ("sweep", sweep, SWEEP_NUMBERS)):
        if name not in where:
            continue
        for literal in [*NOT_JSON_NUMBERS, *(json.dumps(v) for v in NOT_NUMBERS)]:
            guide = _upload(app_url, EX / "strokes-heart.png")  # uploaded files are shared (by content) in /tmp
            call = [guide, *args[1 : where[name]], "X", *args[where[name] + 1 :]]
            body = json.dumps({"data": call})
            kind, out = raw_call(app_url, api, body=body.replace('"X"', literal))
            assert kind == "error", (api, name, literal, out)
            _words_for(name, out["error"])
    serves_next(client)


def _server_function(url: str, fn: str, data: str) -> tuple[int, object]:
    """Call one of the canvas's server functions as the page does (POST /gradio_api/component_server), with the
    call's JSON written out (so that it may hold NaN or a 400-digit number)."""
    import httpx

    config = httpx.get(f"{url}/config").json()
    canvas = next(c for c in config["components"] if "preview" in (c.get("props", {}).get("server_fns") or []))
    body = f'{{"session_hash": "reliability", "component_id": {canvas["id"]}, "fn_name": "{fn}", "data": {data}}}'
    r = httpx.post(f"{url}/gradio_api/component_server", content=body, headers={"content-type": "application/json"})
    return r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text


@pytest.mark.slow  # every bad number through the live path, ~20 s
def test_the_live_preview_and_policy_answer_every_bad_number_in_words(app_url):
    """The canvas's calls (docs/app.md, "Live preview"): a seq of 10^40 once got an HTTP 500 (the answer echoed a
    number JSON could not carry). Every number of a preview call, and the policy's model, now gets words."""
    import base64

    import httpx

    canvas = "data:image/png;base64," + base64.b64encode((EX / "strokes-heart.png").read_bytes()).decode()
    good = {"visitor": "visitor-reliability", "seq": 1, "guide": canvas}
    good["settings"] = {"model": "fluent-emoji-64", "strength": 0.5, "seed": 0, "mask_dilation": 0, "mask_feather": 0}
    status, out = _server_function(app_url, "preview", json.dumps(good))
    assert status == 200 and out["seq"] == 1 and out["image"].startswith("data:image/jpeg"), out
    fields = {"seq": "seq", "seed": "seed", "strength": "strength", "mask_dilation": "mask dilation"}
    fields["mask_feather"] = "mask feather"
    for field, words in fields.items():
        for literal in [*NOT_JSON_NUMBERS, *(json.dumps(v) for v in NOT_NUMBERS)]:
            if literal == "1.5" and field.startswith("mask"):
                continue  # a fraction of a pixel is a valid dilation or feather
            call = json.loads(json.dumps(good))
            (call if field == "seq" else call["settings"])[field] = "X"
            status, out = _server_function(app_url, "preview", json.dumps(call).replace('"X"', literal))
            assert status == 200, (field, literal, out)
            assert words in out.get("error", "") and "image" not in out, (field, literal, out)
            assert out["seq"] == (0 if field == "seq" else 1), "the answer carries a seq the page can read"
    for data in ("null", "5", '"text"', "[1]"):
        status, out = _server_function(app_url, "preview", data)
        assert status == 200 and out["error"] == "a preview call takes one object", out
    for literal in ["1" + "0" * 40, "-5", "NaN", "true", "[1]", "{}", '"no-such-model"']:
        status, out = _server_function(app_url, "policy", f'{{"model": {literal}}}')
        assert status == 200 and out["allowed"] is False and out["reason"].startswith("Live is off: "), (literal, out)
    status, out = _server_function(app_url, "policy", '{"model": "fluent-emoji-64"}')
    assert status == 200 and "allowed" in out
    assert httpx.get(f"{app_url}/config").status_code == 200, "and the server keeps serving"


# ----- faults -------------------------------------------------------------------------------------------------


def test_a_model_that_fails_to_load_leaves_the_app_on_the_default(client, monkeypatch):
    from sdedit.studio.page import build_page

    real = models.loading.load

    def broken(name, *args, **kwargs):
        if name == "ddpm-bedroom-256":
            raise RuntimeError("safetensors: header too large")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(models.loading, "load", broken)
    expect_app_error(
        lambda: call_edit(client, EX / "strokes-heart.png", model="ddpm-bedroom-256"),
        r"'ddpm-bedroom-256' could not be loaded \(RuntimeError: safetensors: header too large\)",
        title="Model unavailable",
    )
    serves_next(client)
    controls = build_page().controls
    out = controls.model_settings("ddpm-bedroom-256", "fluent-emoji-64")
    assert out[controls.model] == out[controls.loaded_model] == "fluent-emoji-64"
    assert "could not be loaded" in out[controls.note]
    with pytest.raises(ModelLoadError):
        models.get_pipeline("ddpm-bedroom-256")
    assert models.get_pipeline(None).config.name == "fluent-emoji-64"


def test_custom_hub_ids_need_the_flag_and_never_open_local_folders(monkeypatch):
    monkeypatch.delenv("SDEDIT_ALLOW_CUSTOM_MODELS", raising=False)
    with pytest.raises(InputError, match="turned off"):
        models.get_pipeline("someone/some-model")
    monkeypatch.setenv("SDEDIT_ALLOW_CUSTOM_MODELS", "1")
    for bad in ("../models/fluent-emoji-64", "/etc/passwd", "a/b/c", "..", "models/../x", "C:\\models", "~/x"):
        with pytest.raises(InputError, match="unknown model"):
            models.get_pipeline(bad)
    # these look like Hub ids and exist here (a folder, a file): only the Hub (offline: a clear error) is asked
    for local in ("models/emoji-features", "examples/make_examples.py"):
        assert (REPO / local).exists()
        with pytest.raises(ModelNotFoundError, match=r"can't be reached|offline|not in the local cache"):
            models.get_pipeline(local)
    # a configured model's own source names that model, nothing else
    assert models.get_pipeline("models/fluent-emoji-64") is models.get_pipeline(None)


def _inject(monkeypatch, exc: BaseException, when=lambda x: True):
    """Make the current pipeline's UNet raise `exc` on a forward (while `when(x)` holds)."""
    pipe = models.get_pipeline(None)
    real = type(pipe).model_fn
    calls = {"n": 0}

    def model_fn(self=pipe):
        fn = real(self)

        def call(x, level):
            calls["n"] += 1
            if when(x):
                raise exc
            return fn(x, level)

        return call

    monkeypatch.setattr(pipe, "model_fn", model_fn)
    return calls


@pytest.mark.parametrize(
    "exc",
    [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), RuntimeError("CUDA out of memory.")],
    ids=["OutOfMemoryError", "RuntimeError"],
)
def test_out_of_memory_gives_a_clear_message_frees_memory_and_later_requests_work(client, monkeypatch, exc):
    freed = []
    monkeypatch.setattr(jobs, "free_memory", lambda: freed.append(1))
    _inject(monkeypatch, exc)
    expect_app_error(
        lambda: call_edit(client, EX / "strokes-heart.png"),
        r"ran out of memory for this request \(1 image\(s\) at 64 px\)\. Memory has been freed",
        title="Out of memory",
    )
    assert freed
    monkeypatch.undo()
    serves_next(client)


def test_out_of_memory_in_a_batch_is_retried_one_request_at_a_time(monkeypatch):
    from sdedit.studio.queue import ServingQueue

    calls = _inject(monkeypatch, torch.OutOfMemoryError("CUDA out of memory"), when=lambda x: x.shape[0] > 1)
    service = ServingQueue(jobs._run_tickets, max_items=8, window_s=0, slot=jobs.MODEL_SLOTS)
    settings = [jobs.EditSettings(seed=s, **QUICK) for s in (1, 2)] + [jobs.EditSettings(**dict(QUICK, strength=0.9))]
    *queued, blocker = (jobs.prepare_edit(EX / "strokes-heart.png", None, s, animate=False) for s in settings)
    with jobs.MODEL_SLOTS:  # the worker takes the blocker and waits for the model; the two others queue up
        service.submit(blocker.key, blocker, 1, blocker.work)
        time.sleep(0.2)
        tickets = [service.submit(j.key, j, j.size, j.work) for j in queued]
    outs = [t.wait(timeout=60) for t in tickets]
    assert [o.metadata["seeds"] for o in outs] == [[1], [2]] and service.stats["retried"] >= 1
    assert calls["n"] >= 3
    service.close()


def test_free_memory_empties_the_cuda_cache(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "ipc_collect", lambda: seen.append("ipc_collect"))
    sdedit.studio.guard.free_memory()
    assert seen == ["empty_cache", "ipc_collect"]
    assert sdedit.studio.guard.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert sdedit.studio.guard.is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not sdedit.studio.guard.is_out_of_memory(RuntimeError("shape mismatch"))


def test_a_cancelled_request_frees_its_slot(client):
    from gradio_client import handle_file

    long = dict(QUICK, strength=1.0, steps=1000)  # 1000 evaluations: about a minute on one CPU thread
    job = client.submit(
        handle_file(str(EX / "strokes-apple.png")), None, *long.values(), 1, 0, 0.0, 0, 0, api_name="/edit"
    )
    service = jobs.edit_service()
    aborted = service.stats["aborted"]
    deadline = time.monotonic() + 60
    while job.status().progress_data is None and time.monotonic() < deadline:  # running, reporting steps
        time.sleep(0.1)
    assert job.status().progress_data, "the long request never started"
    job.cancel()
    t0 = time.monotonic()
    serves_next(client)
    assert time.monotonic() - t0 < 20  # the long request would hold the model for a minute
    assert service.stats["aborted"] == aborted + 1


# ----- safety -------------------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _model_folder(tmp_path: Path, safetensors: bool, evil_bin: bool) -> tuple[Path, Path]:
    from diffusers import DDPMScheduler

    unet = tiny_vp_unet()
    folder, marker = tmp_path / "model", tmp_path / "PWNED"
    if safetensors:
        unet.save_pretrained(folder / "unet")
    else:
        (folder / "unet").mkdir(parents=True)
        unet.save_config(folder / "unet")
    if evil_bin:
        torch.save({**unet.state_dict(), "payload": _Evil(marker)}, folder / "unet" / "diffusion_pytorch_model.bin")
    DDPMScheduler().save_pretrained(folder / "scheduler")
    return folder, marker


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    from sdedit import SDEditPipeline
    from sdedit.loading import clear_cache

    folder, marker = _model_folder(tmp_path, safetensors=False, evil_bin=True)
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        SDEditPipeline.from_pretrained(str(folder))
    assert not marker.exists()
    folder2, marker2 = _model_folder(tmp_path / "both", safetensors=True, evil_bin=True)
    pipe = SDEditPipeline.from_pretrained(str(folder2))  # safetensors preferred: the .bin is never opened
    assert pipe(np.zeros((16, 16, 3), np.uint8), num_inference_steps=2, progress=False).images
    assert not marker2.exists()
    clear_cache()


def test_no_remote_code_or_unsafe_deserialisation_in_the_sources():
    sources = [REPO / "app.py", *sorted((REPO / "sdedit").rglob("*.py"))]
    for path in sources:
        text = path.read_text()
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        assert not re.search(r"weights_only\s*=\s*False", text), path
        assert not re.search(r"\bpickle\.loads?\(|\bdill\.|custom_pipeline", text), path
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in m.group(1), (path, m.group(0))


def _files(root: Path) -> set[Path]:
    skip = {".git", ".venv", "runs", ".pytest_cache", ".hypothesis", ".ruff_cache", "__pycache__"}
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        out |= {Path(dirpath) / f for f in filenames}
    return out


def test_requests_write_nothing_into_the_repo_and_outputs_are_temporary(client):
    import tempfile

    before = _files(REPO)
    gallery, animation, *_ = call_edit(client, EX / "photo-car.png", EX / "photo-car-strokes.png", num_samples=2)
    tmp = Path(tempfile.gettempdir()).resolve()
    assert all(Path(p).resolve().is_relative_to(tmp) for p in (gallery[0]["image"], animation))
    client.predict(*[_gf(EX / "photo-cat.png"), 4, 0, 1], api_name="/painting")
    new = {p for p in _files(REPO) - before if p.suffix in {".png", ".gif", ".webp", ".jpg", ".json", ".npy", ""}}
    assert not new, new
    # the server's own copies (what the client downloaded came from Gradio's cache, under the temp dir)
    service_gifs = sorted((tmp / "sdedit-studio").glob("*.gif"), key=lambda p: p.stat().st_mtime)
    assert service_gifs and service_gifs[-1].resolve().is_relative_to(tmp)
    import app

    demo = app.build_demo()
    assert demo.delete_cache == (600, int(limits.OUTPUT_TTL_S))


def _gf(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def test_old_animations_are_deleted(tmp_path):
    for i in range(6):
        p = tmp_path / f"reverse-{i}.gif"
        p.write_bytes(b"GIF89a")
        age = 7200 if i < 2 else 0
        os.utime(p, (time.time() - age - i, time.time() - age - i))
    (tmp_path / "keep.txt").write_text("not ours")
    assert progress.cleanup_outputs(tmp_path, ttl_s=3600, keep=3) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "reverse-2.gif", "reverse-3.gif", "reverse-4.gif"]


def test_limits_are_applied_before_any_heavy_work(monkeypatch):
    """Over a limit, the model is never called: the request is refused while being checked."""
    pipe = models.get_pipeline(None)
    calls = _inject(monkeypatch, RuntimeError("the model must not run"))
    with pytest.raises(LimitError, match="network evaluations"):
        jobs.prepare_edit(
            EX / "strokes-heart.png",
            None,
            jobs.EditSettings(**dict(QUICK, steps=1000, strength=1.0, repeats=5, num_samples=8)),
        )
    with pytest.raises(LimitError, match="MP"):
        jobs.prepare_edit(_png(Image.new("L", (5000, 4000))), None, jobs.EditSettings(**QUICK))
    assert calls["n"] == 0 and pipe is models.get_pipeline(None)


def test_warm_up_runs_a_small_edit_and_leaves_no_file():
    folder = Path(tempfile.gettempdir()) / "sdedit-studio"
    before = set(folder.glob("*.gif")) if folder.is_dir() else set()
    seconds = jobs.warm_up()
    assert 0 < seconds < 120
    assert set(folder.glob("*.gif")) <= before


def test_edit_requests_are_admitted_for_a_whole_batch():
    import app

    demo = app.build_demo()
    edit_fns = [fn for fn in demo.fns.values() if fn.name == "edit"]
    assert edit_fns and all(fn.concurrency_id == "edit" for fn in edit_fns)
    assert all(fn.concurrency_limit == limits.EDIT_CONCURRENCY == 2 * limits.MAX_BATCH for fn in edit_fns)


def test_malloc_arenas_are_capped_on_glibc():
    """The app caps glibc's arenas so that its memory stays flat under concurrent load (sdedit.studio.guard)."""
    from sdedit.studio.guard import limit_malloc_arenas

    assert limit_malloc_arenas() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trimming_returns_a_fragmented_heap_to_the_system():
    """What keeps the server's RSS flat between batches: free heap pages between live blocks go back."""
    from sdedit.studio.guard import trim_malloc

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))

    blocks = [bytearray(64 * 1024) for _ in range(2000)]  # 128 MB below glibc's mmap threshold: on the heap
    kept = blocks[::50]  # live blocks scattered over the heap, so nothing is freed from its top alone
    del blocks
    before = rss_mb()
    assert trim_malloc()
    assert before - rss_mb() > 60, "malloc_trim returned little of 125 MB of free heap"
    assert len(kept) == 40


def test_each_batch_trims_the_heap(monkeypatch):
    calls = []
    monkeypatch.setattr(jobs, "trim_malloc", lambda: calls.append(1) or True)
    jobs.run_edit(Image.new("RGB", (64, 64), "red"), None, jobs.EditSettings(steps=4, strength=0.5))
    assert calls, "the batcher's worker did not trim after its batch"
