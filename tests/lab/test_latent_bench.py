"""CI smoke of the latent benchmarks at toy size: every measurement runs through the real code path and lands in
the JSON. It asserts what was measured and that it is consistent, never how fast: CI machines are shared."""

from __future__ import annotations

import json

import pytest

from benchmarks import latent, latent_import


def test_latent_benchmark_measures_every_part_at_tiny_scale(tmp_path):
    out = tmp_path / "latent.json"
    argv = ["--scale", "tiny", "--device", "cpu", "--dtypes", "fp32", "--steps", "1,2", "--warmup", "0"]
    assert latent.main([*argv, "--repeats", "1", "--preview-seconds", "0", "--batch8", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["resolution"] == 64 and run["dtype"] == "fp32"
    assert set(run["components"]) == {
        "unet_ms", "vae_encode_ms", "vae_decode_ms", "taesd_decode_ms", "taesd_encode_ms", "prompt_encode_ms",
    }  # fmt: skip
    assert all(v > 0 for v in run["components"].values())
    assert [e["steps"] for e in run["edits"]] == [1, 2] and all(e["edit_ms"] > 0 for e in run["edits"])
    assert run["previews"]["previews"] >= 2 and run["previews"]["previews_per_s"] > 0
    assert run["batch8"][0]["batch"] == 8 and run["batch8"][0]["images_per_s"] > 0
    assert result["targets_h100"] == {"edit_1_step_ms": 50.0, "previews_per_s": 20.0}
    assert "load_avg_1m" in result["environment"] and "load_avg_after" in run
    assert "meets_targets" not in result  # only a GPU run can say


def test_the_architectures_are_sd_turbos():
    """The full-size configs build the published parameter counts (UNet 866M, autoencoder 84M, text 340M)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch_meta():
        unet = UNet2DConditionModel(**latent.SD_TURBO_UNET)
        vae = AutoencoderKL(**latent.SD_VAE)
        text = CLIPTextModel(CLIPTextConfig(**latent.SD2_TEXT))
    millions = [round(sum(p.numel() for p in m.parameters()) / 1e6) for m in (unet, vae, text)]
    assert millions[0] == pytest.approx(866, abs=1) and millions[1] == pytest.approx(84, abs=1)
    assert millions[2] == pytest.approx(340, abs=1)


def torch_meta():
    import torch

    return torch.device("meta")


@pytest.mark.slow
def test_import_benchmark_runs_both_variants(tmp_path):
    out = tmp_path / "import.json"
    assert latent_import.main(["--runs", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {"installed", "absent"}
    assert result["summary"]["absent"]["transformers_modules"] == 0
    assert all(r["edit_s"] > 0 for r in result["runs"]) and "load_avg_before" in result
