"""Results carry their settings: PNG text chunks, `python -m sdedit info`, and the same seed redoing the image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sdedit.cli import main
from sdedit.errors import InputError
from sdedit.recall import png_bytes, read_settings, save_png, settings_of


def test_settings_round_trip_through_a_png(vp_pipe, tmp_path):
    img = np.full((16, 16, 3), 90, np.uint8)
    out = vp_pipe(img, strength=0.4, sampler="ddim", num_inference_steps=10, num_images=2, seed=7, progress=False)
    path = save_png(out.images[1], tmp_path / "r.png", settings_of(out.metadata, 1))
    settings = read_settings(path)
    assert settings["seed"] == 8 and settings["sampler"] == "ddim" and settings["strength"] == 0.4
    assert settings["num_inference_steps"] == 10 and settings["repeats"] == 1 and settings["masked"] is False
    assert Image.open(path).text["parameters"].startswith("t0 0.4, sampler ddim, steps 10")
    again = vp_pipe(
        img,
        strength=settings["strength"],
        sampler=settings["sampler"],
        num_inference_steps=settings["num_inference_steps"],
        repeats=settings["repeats"],
        seed=settings["seed"],
        progress=False,
    )
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(Image.open(path).convert("RGB")))


def test_a_png_without_settings_is_a_clear_error(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(InputError, match="carries no SDEdit Studio settings"):
        read_settings(tmp_path / "plain.png")


def test_cli_edit_writes_settings_and_info_prints_them(tiny_model_dir, tmp_path, capsys):
    guide = tmp_path / "g.png"
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(guide)
    mask = tmp_path / "m.png"
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 4)).save(mask)
    out = tmp_path / "out"
    argv = ["edit", "--model", str(tiny_model_dir), "--guide", str(guide), "--mask", str(mask), "--strength", "0.3",
            "--steps", "10", "--seed", "5", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    png = next(out.glob("*.png"))
    capsys.readouterr()
    assert main(["info", "--json", str(png)]) == 0
    settings = json.loads(capsys.readouterr().out)
    assert settings["seed"] == 5 and settings["masked"] is True and settings["strength"] == 0.3
    assert main(["info", str(png)]) == 0
    assert "t0 0.3" in capsys.readouterr().out
    assert main(["info", str(guide)]) == 2  # a PNG without settings: one line, exit code 2
    assert "carries no SDEdit Studio settings" in capsys.readouterr().err


def test_info_lists_and_extracts_the_inputs_a_png_carries(tmp_path, capsys):
    guide = Image.fromarray(np.arange(12 * 10 * 3, dtype=np.uint8).reshape(10, 12, 3))
    mask = Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), 3))
    settings = {"model": "m", "strength": 0.4, "seed": 7}
    png = save_png(Image.new("RGB", (12, 10)), tmp_path / "r.png", settings,
                   {"guide": png_bytes(guide), "mask": png_bytes(mask)})  # fmt: skip
    assert main(["info", str(png), "--extract", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    assert "carries guide 12x10, mask 10x10" in out
    with Image.open(tmp_path / "x" / "r-guide.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(guide))
    with Image.open(tmp_path / "x" / "r-mask.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(mask))
    assert not (tmp_path / "x" / "r-strength_map.png").exists()
    assert main(["info", "--json", str(png)]) == 0
    assert json.loads(capsys.readouterr().out)["carries"] == {"guide": [12, 10], "mask": [10, 10]}


def test_batch_outputs_carry_their_settings(tiny_model_dir, tmp_path):
    from sdedit.batch import RECORDS, BatchSettings, run_batch

    guides = tmp_path / "in"
    guides.mkdir()
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(guides / "a.png")
    settings = BatchSettings(strength=0.5, steps=6, num=2, seed=3)
    run_batch(guides, tmp_path / "out", model=str(tiny_model_dir), settings=settings, progress=False)
    record = json.loads((tmp_path / "out" / RECORDS / "a.json").read_text())
    carried = [read_settings(tmp_path / "out" / name) for name in record["outputs"]]
    assert [c["seed"] for c in carried] == record["seeds"]
    assert all(c["strength"] == 0.5 and c["num_inference_steps"] == 6 and not c["masked"] for c in carried)


def test_a_png_carries_the_models_inputs_in_private_chunks_that_read_back_exactly(tmp_path):
    """The guide, mask and strength map as PNG bytes in chunks of their own: read back byte for byte; a chunk
    whose CRC does not match is left out; a PNG without them (or from before them) gives {}."""
    import io

    from sdedit.recall import png_bytes, read_inputs

    rng = np.random.default_rng(0)
    guide = png_bytes(Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)))
    mask = png_bytes(Image.fromarray((rng.random((40, 30)) > 0.5).astype(np.uint8) * 255))
    path = save_png(Image.new("RGB", (30, 40)), tmp_path / "r.png", {"seed": 1}, {"guide": guide, "mask": mask})
    assert read_inputs(path) == {"guide": guide, "mask": mask}
    assert read_settings(path)["seed"] == 1 and Image.open(path).size == (30, 40)  # still an ordinary PNG
    data = path.read_bytes()
    assert read_inputs(io.BytesIO(data)) == read_inputs(data) == {"guide": guide, "mask": mask}
    at = data.index(b"sdMk") + 4 + 100  # a byte inside the mask's chunk
    damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    assert read_inputs(damaged) == {"guide": guide}
    assert read_inputs(save_png(Image.new("RGB", (4, 4)), tmp_path / "old.png", {"seed": 2})) == {}
    with pytest.raises(InputError, match="not a PNG"):
        read_inputs(b"GIF89a...")
    with pytest.raises(ValueError, match="PNG bytes"):
        save_png(Image.new("RGB", (4, 4)), tmp_path / "x.png", {}, {"guide": b"not a png"})
