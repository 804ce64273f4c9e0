"""The command line: edit and sweep write what they say, errors are one clear line, --help is useful."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sdedit.cli import main
from sdedit.recall import read_settings


@pytest.fixture
def guide(tmp_path):
    path = tmp_path / "strokes.png"
    img = np.full((24, 32, 3), 255, np.uint8)
    img[6:18, 8:24] = (250, 200, 60)
    Image.fromarray(img).save(path)
    return path


def test_edit_writes_images_and_metadata(tiny_model_dir, guide, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "edit",
            "--model",
            str(tiny_model_dir),
            "--guide",
            str(guide),
            "--strength",
            "0.5",
            "--steps",
            "8",
            "--sampler",
            "ddim",
            "--num",
            "2",
            "--seed",
            "7",
            "--repeats",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["strokes-t0.5-ddim-seed7.png", "strokes-t0.5-ddim-seed8.png"]
    assert Image.open(pngs[0]).size == (32, 24)
    meta = json.loads((out / "strokes-metadata.json").read_text())
    assert meta["seeds"] == [7, 8] and meta["repeats"] == 2 and meta["steps"] == 4 and meta["sampler"] == "ddim"
    assert "2 image(s)" in capsys.readouterr().out


def test_edit_with_mask_keeps_the_rest(tiny_model_dir, guide, tmp_path):
    mask = np.zeros((24, 32), np.uint8)
    mask[6:18, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "edit",
                "--model",
                str(tiny_model_dir),
                "--guide",
                str(guide),
                "--mask",
                str(tmp_path / "mask.png"),
                "--steps",
                "8",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    result = np.asarray(Image.open(next(out.glob("*.png"))))
    original = np.asarray(Image.open(guide))
    assert np.array_equal(result[mask == 0], original[mask == 0])


def test_sweep_writes_a_grid_a_plot_and_rows(tiny_model_dir, guide, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "sweep",
                "--model",
                str(tiny_model_dir),
                "--guide",
                str(guide),
                "--strengths",
                "0.2,0.6,1.0",
                "--steps",
                "5",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (out / "strokes-sweep.png").is_file() and (out / "strokes-sweep-l2.png").is_file()
    rows = json.loads((out / "strokes-sweep.json").read_text())["rows"]
    assert [r["strength"] for r in rows] == [0.2, 0.6, 1.0]
    assert rows[0]["l2_to_guide"] < rows[-1]["l2_to_guide"]  # faithful at low t0, far at t0 = 1
    grid = Image.open(out / "strokes-sweep.png")
    assert grid.size[0] == 4 * 128
    assert "t0=1" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(tiny_model_dir, guide, tmp_path, capsys):
    assert (
        main(["edit", "--model", str(tiny_model_dir), "--guide", str(guide), "--strength", "3", "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: strength") and "Traceback" not in err
    assert main(["edit", "--model", "nope/not-here", "--guide", str(guide)]) == 2
    assert "offline" in capsys.readouterr().err
    assert main(["edit", "--model", str(tiny_model_dir), "--guide", str(tmp_path / "missing.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_models_lists_the_configs(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "* fluent-emoji-64" in text and "google/ddpm-church-256" in text and "google/ncsnpp-ffhq-256" in text


def test_module_entry_point_help():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "sdedit", "edit", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0
    for flag in (
        "--model",
        "--guide",
        "--mask",
        "--strength",
        "--steps",
        "--sampler",
        "--repeats",
        "--num",
        "--seed",
        "--out",
    ):
        assert flag in result.stdout


def test_edit_with_a_strength_map_keeps_its_black_pixels(tiny_model_dir, guide, tmp_path):
    smap = np.zeros((24, 32), np.uint8)
    smap[:, 10:20], smap[:, 20:] = 128, 255  # kept, half of t0, full t0
    Image.fromarray(smap).save(tmp_path / "map.png")
    out = tmp_path / "out"
    argv = ["edit", "--model", str(tiny_model_dir), "--guide", str(guide), "--strength-map", str(tmp_path / "map.png"),
            "--strength", "0.8", "--steps", "10", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = np.asarray(Image.open(next(out.glob("*.png"))).convert("RGB"))
    original = np.asarray(Image.open(guide).convert("RGB"))
    assert np.array_equal(result[:, :10], original[:, :10])
    assert not np.array_equal(result[:, 20:], original[:, 20:])
    meta = json.loads(next(out.glob("*.json")).read_text())
    assert meta["strength_map"] == [True]


def test_the_features_command_takes_a_colour_jitter():
    from sdedit.cli import build_parser

    args = build_parser().parse_args(["features", "--jitter", "1", "--out", "x"])
    assert args.jitter == 1.0 and args.out == "x"  # the recipe of models/emoji-features-jitter
    assert build_parser().parse_args(["features"]).jitter == 0.0  # the shipped recipe


def _edit(model_dir, guide, out, *more) -> int:
    argv = ["edit", "--model", str(model_dir), "--guide", str(guide), "--steps", "4", "--out", str(out)]
    return main([*argv, "--no-progress", *more])


def test_out_with_an_image_extension_is_the_file_of_the_one_result(tiny_model_dir, guide, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert _edit(tiny_model_dir, guide, out, "--seed", "3") == 0
    assert out.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["strokes.png", "x.png"]
    assert Image.open(out).size == (32, 24)
    assert read_settings(out)["seed"] == 3  # the file carries its settings, as the folder's files do
    assert str(out) in capsys.readouterr().out
    jpg = tmp_path / "sub" / "y.JPG"  # any image extension, any case; missing folders are made
    assert _edit(tiny_model_dir, guide, jpg) == 0 and Image.open(jpg).format == "JPEG"


def test_out_pattern_names_one_file_per_result(tiny_model_dir, guide, tmp_path):
    assert _edit(tiny_model_dir, guide, tmp_path / "r-{i}.png", "--num", "3", "--seed", "5") == 0
    assert _edit(tiny_model_dir, guide, tmp_path / "s{seed}.png", "--num", "2", "--seed", "5") == 0
    names = sorted(p.name for p in tmp_path.glob("*.png") if p.name != "strokes.png")
    assert names == ["r-0.png", "r-1.png", "r-2.png", "s5.png", "s6.png"]
    assert [read_settings(tmp_path / f"r-{i}.png")["seed"] for i in range(3)] == [5, 6, 7]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r-1.png")), np.asarray(Image.open(tmp_path / "s6.png")))


def test_one_file_for_several_results_is_refused_before_the_model_loads(guide, tmp_path, capsys, monkeypatch):
    import sdedit.cli as cli

    def no_model(args):
        raise AssertionError("the model was loaded for a request that was refused")

    monkeypatch.setattr(cli, "_pipe", no_model)
    assert main(["edit", "--guide", str(guide), "--num", "4", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "x.png" in err and "4 images" in err
    assert "x-{i}.png" in err and "x-{seed}.png" in err and "folder" in err
    assert main(["edit", "--guide", str(guide), "--out", str(tmp_path / "x-{n}.png")]) == 2
    assert "{n}" in capsys.readouterr().err
    assert main(["edit", "--guide", str(guide), "--out", str(tmp_path / "x-{i}")]) == 2
    assert "is a pattern: it must end in .png" in capsys.readouterr().err
    assert main(["sweep", "--guide", str(guide), "--out", str(tmp_path / "g-{i}.png")]) == 2
    assert "not a pattern" in capsys.readouterr().err
    assert not list(tmp_path.glob("x*"))


def test_folders_stay_folders(tiny_model_dir, guide, tmp_path):
    """A path without an image extension is a folder; so is an existing folder whose name ends in .png."""
    odd = tmp_path / "kept.png"
    odd.mkdir()
    assert _edit(tiny_model_dir, guide, odd, "--num", "2") == 0
    assert len(list(odd.glob("strokes-*.png"))) == 2 and (odd / "strokes-metadata.json").is_file()


def test_sweep_out_with_an_image_extension_is_the_grid(tiny_model_dir, guide, tmp_path):
    out = tmp_path / "grid.png"
    argv = ["sweep", "--model", str(tiny_model_dir), "--guide", str(guide), "--strengths", "0.3,0.6", "--steps", "4"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert out.is_file() and Image.open(out).size[0] == 3 * 128  # the guide and one column per t0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "strokes.png"]


def test_help_shows_each_kind_of_out():
    from sdedit.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    text = sub["edit"].format_help()
    for example in ("--out result.png", "--out 'result-{i}.png'", "--out results/"):
        assert example in text
    assert "--out sweep.png" in sub["sweep"].format_help() and "--out sweep/" in sub["sweep"].format_help()


def test_a_cli_run_prints_no_package_advice_and_writes_the_file_it_is_told(tmp_path):
    """The real command in a fresh process, on the embedded model: stderr holds no advice to install packages
    (diffusers' `accelerate` note came on every load), and `--out x.png` is the file."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "x.png"
    cmd = [sys.executable, "-m", "sdedit", "edit", "--guide", "examples/paint-heart.png", "--out", str(out)]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "pip install" not in result.stderr and "accelerate" not in result.stderr, result.stderr
    assert out.is_file() and Image.open(out).size == (256, 256)


def test_a_guide_of_thin_lines_gets_the_pages_hint_unless_its_outlines_are_filled(tiny_model_dir, tmp_path, capsys):
    """A newcomer's outline drawing through the CLI: the note says what works (the page's canvas says it too);
    a filled drawing, a filled run and a photo-style edit with a mask get no note."""
    from PIL import ImageDraw

    outline = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(outline).ellipse((12, 12, 52, 52), outline=(230, 30, 40), width=2)
    outline.save(tmp_path / "outline.png")
    filled = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(filled).ellipse((12, 12, 52, 52), fill=(230, 30, 40))
    filled.save(tmp_path / "filled.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "mask.png")

    def note(guide: str, *more) -> str:
        assert _edit(tiny_model_dir, tmp_path / guide, tmp_path / "out.png", *more) == 0
        return capsys.readouterr().err

    assert "--fill-outlines" in note("outline.png") and "thin lines" in note("outline.png")
    assert "thin lines" not in note("outline.png", "--fill-outlines")
    assert "thin lines" not in note("filled.png")
    assert "thin lines" not in note("outline.png", "--mask", str(tmp_path / "mask.png"))
