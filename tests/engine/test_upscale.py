"""The learned 4x upscaler: shape and range, the shipped folder loads offline, the pipeline applies it before
mapping back (outside a mask the output is still the input, pixel for pixel), the CLI, batch and app apply it
when the model's config names one and not otherwise, and the trainer trains, resumes and exports."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdedit.configs import ModelConfig
from sdedit.errors import InputError, ModelLoadError
from sdedit.imaging import place, unplace
from sdedit.upscale import SRNet, Upscaler, load_upscaler, save_upscaler, upscale

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "fluent-emoji-upscaler-4x"
EX = REPO / "examples"


def _net(seed: int = 0, **kw) -> SRNet:
    """A tiny SRNet whose last layer is not zero (an untrained one is exactly bicubic)."""
    torch.manual_seed(seed)
    net = SRNet(**{"channels": 8, "blocks": 1, **kw})
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    return net


@pytest.fixture(scope="module")
def tiny_upscaler_dir(tmp_path_factory):
    return save_upscaler(_net(), tmp_path_factory.mktemp("tiny-upscaler"), {"name": "tiny-up"}, torch.float32)


@pytest.fixture
def up_pipe(tiny_upscaler_dir):
    """The tiny VP model (16 px) with a config that names the tiny upscaler."""
    from diffusers import DDPMScheduler

    from sdedit import SDEditPipeline
    from tests.conftest import tiny_vp_unet

    cfg = ModelConfig(name="tiny-up", source="", resolution=16, upscaler=str(tiny_upscaler_dir))
    return SDEditPipeline(tiny_vp_unet(), DDPMScheduler(num_train_timesteps=1000), cfg)


# ----- the network and the folder -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["edsr", "espcn"])
def test_output_shape_dtype_and_range(kind):
    up = Upscaler(_net(kind=kind))
    rng = np.random.default_rng(0)
    canvases = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    out = up.upscale(canvases, chunk=2)  # chunks join back in order
    assert out.shape == (3, 64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out[2], up.upscale(canvases[2]))  # one (H, W, 3) canvas works too
    assert up.upscale(np.zeros((4, 4, 3), np.uint8)).shape == (16, 16, 3)
    for bias, value in ((10.0, 255), (-10.0, 0)):  # far out of range: clamped, not wrapped around
        torch.nn.init.constant_(up.net.tail.bias, bias)
        assert (up.upscale(canvases) == value).all()
    with pytest.raises(ValueError, match="uint8"):
        up.upscale(canvases.astype(np.float32))


def test_an_untrained_net_is_bicubic():
    net = SRNet(channels=8, blocks=1)  # the last layer starts at zero
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(net(x), torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic"))


def test_save_and_load_round_trip_and_errors(tmp_path):
    net = _net(kind="espcn", channels=16)
    folder = save_upscaler(net, tmp_path / "up", {"name": "round-trip"}, torch.float32)
    loaded = load_upscaler(folder)
    assert loaded.name == "round-trip" and loaded.config["kind"] == "espcn" and loaded is load_upscaler(folder)
    canvases = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(loaded.upscale(canvases), Upscaler(net).upscale(canvases))
    assert np.array_equal(upscale(canvases, folder), loaded.upscale(canvases))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        load_upscaler(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"kind": "edsr", "channels": 4, "blocks": 1}))
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        load_upscaler(bad)


def test_the_shipped_upscaler_loads_offline(monkeypatch):
    """The committed folder is complete, small, fp16, and loading it opens no connection."""

    def no_network(*args, **kwargs):
        raise AssertionError("the upscaler tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for name in ("config.json", "model.safetensors", "README.md", "samples.png", "training.json"):
        assert (SHIPPED / name).is_file(), name
    assert (SHIPPED / "model.safetensors").stat().st_size <= 5 * 1024 * 1024
    from safetensors import safe_open

    with safe_open(str(SHIPPED / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 (a safe_open handle is not a dict)
    assert dtypes == {torch.float16}
    up = load_upscaler(SHIPPED)
    canvas = np.asarray(Image.open(EX / "strokes-heart.png").convert("RGB").resize((64, 64), Image.LANCZOS))
    out = up.upscale(canvas[None])
    assert out.shape == (1, 256, 256, 3) and out.dtype == np.uint8
    bicubic = np.asarray(Image.fromarray(canvas).resize((256, 256), Image.BICUBIC))
    assert np.abs(out[0].astype(int) - bicubic).mean() > 0.5  # it learned something: not bicubic


def test_the_embedded_model_names_its_upscaler():
    from sdedit.configs import default_config, model_configs

    assert default_config().upscaler_path == SHIPPED
    assert all(c.upscaler is None for c in model_configs().values() if not c.default)


# ----- the pipeline ------------------------------------------------------------------------------------------
def test_unplace_scales_the_box_for_an_upscaled_canvas():
    guide = Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    canvas, placement = place(guide, 16, "pad")  # box (0, 2, 16, 14)
    big = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgb = np.asarray(guide)
    assert np.array_equal(unplace(big, placement, rgb), big[8:56])  # 4x the box, already the guide's size
    assert unplace(np.asarray(canvas), placement, rgb).shape == (48, 64, 3)  # the model's canvas as before
    for fit in ("crop", "stretch"):
        _, p = place(guide, 16, fit)
        assert unplace(big, p, rgb).shape == (48, 64, 3)


@pytest.mark.parametrize("fit", ["pad", "crop", "stretch"])
def test_outside_the_mask_the_output_is_the_input_with_the_upscaler_on(up_pipe, photo, fit):
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[5:17, 8:26] = 1.0
    kw = dict(strength=0.6, num_inference_steps=6, seed=4, fit=fit, output_type="uint8", progress=False)
    on = up_pipe(photo, mask, **kw)
    off = up_pipe(photo, mask, upscale=False, **kw)
    assert on.metadata["upscaler"] == "tiny-up" and off.metadata["upscaler"] is None
    a, b = on.images[0], off.images[0]
    assert a.shape == b.shape == photo.shape
    assert np.array_equal(a[mask == 0], photo[mask == 0])
    assert not np.array_equal(a[mask == 1], b[mask == 1])  # inside, the upscaler changed the result
    assert np.array_equal(on.canvases, off.canvases)  # the model's own canvases are the same


def test_upscale_true_needs_an_upscaler_and_output_type_model_is_unchanged(vp_pipe, up_pipe, photo):
    with pytest.raises(InputError, match="has no upscaler"):
        vp_pipe(photo, upscale=True, num_inference_steps=4, progress=False)
    with pytest.raises(InputError, match="True, False or None"):
        up_pipe(photo, upscale="yes", num_inference_steps=4, progress=False)
    assert vp_pipe(photo, num_inference_steps=4, progress=False).metadata["upscaler"] is None
    kw = dict(num_inference_steps=4, seed=1, output_type="model", progress=False)
    raw = up_pipe(photo, **kw)
    assert raw.images.shape == (1, 3, 16, 16) and raw.metadata["upscaler"] is None
    assert torch.equal(raw.images, up_pipe(photo, upscale=False, **kw).images)


def test_postprocess_takes_the_flag(up_pipe, photo):
    s = up_pipe.check_inputs(num_inference_steps=4, output_type="uint8")
    guide = up_pipe.prepare(photo, None, s.fit)
    samples = up_pipe.run([guide], s, seeds=[0])
    default = up_pipe.postprocess(samples, [guide], s)
    assert default.metadata["upscaler"] == "tiny-up"
    assert np.array_equal(default.images, up_pipe.postprocess(samples, [guide], s, upscale=True).images)
    assert up_pipe.postprocess(samples, [guide], s, upscale=False).metadata["upscaler"] is None


# ----- the command line, batch and the app ---------------------------------------------------------------------
@pytest.fixture
def config_with_upscaler(tmp_path, monkeypatch, tiny_model_dir, tiny_upscaler_dir):
    """A config folder where `tiny-up` is the tiny model with the tiny upscaler."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "tiny-up.yaml").write_text(
        f"name: tiny-up\nsource: {tiny_model_dir}\nsde: vp\nresolution: 16\ndefault: true\n"
        f"upscaler: {tiny_upscaler_dir}\n"
    )
    monkeypatch.setenv("SDEDIT_CONFIG_DIR", str(folder))
    return folder


def _cli_edit(model, guide, out, *extra):
    from sdedit.cli import main

    argv = ["edit", "--model", str(model), "--guide", str(guide), "--steps", "4", "--seed", "3", "--out", str(out)]
    assert main([*argv, "--no-progress", *extra]) == 0
    meta = json.loads(next(Path(out).glob("*-metadata.json")).read_text())
    return meta, np.asarray(Image.open(meta["outputs"][0]))


def test_cli_applies_the_upscaler_when_the_config_names_one(tmp_path, photo, tiny_model_dir, config_with_upscaler):
    from sdedit.recall import read_settings

    guide = tmp_path / "photo.png"
    Image.fromarray(photo).save(guide)
    meta, on = _cli_edit("tiny-up", guide, tmp_path / "on")
    assert meta["upscaler"] == "tiny-up" and on.shape == photo.shape
    assert read_settings(meta["outputs"][0])["upscaler"] == "tiny-up"  # the PNG says how it was made
    meta, off = _cli_edit("tiny-up", guide, tmp_path / "off", "--no-upscale")
    assert meta["upscaler"] is None and not np.array_equal(on, off)
    assert "upscaler" not in read_settings(meta["outputs"][0])


def test_cli_does_not_upscale_a_model_without_an_upscaler(tmp_path, photo, tiny_model_dir):
    guide = tmp_path / "photo.png"
    Image.fromarray(photo).save(guide)
    meta, img = _cli_edit(tiny_model_dir, guide, tmp_path / "plain")  # a folder: no config, no upscaler
    assert meta["upscaler"] is None and img.shape == photo.shape
    meta, again = _cli_edit(tiny_model_dir, guide, tmp_path / "plain2", "--no-upscale")
    assert np.array_equal(img, again)


def test_batch_applies_the_upscaler_and_no_upscale_skips_it(tmp_path, photo, config_with_upscaler):
    from sdedit.cli import main

    guides = tmp_path / "guides"
    guides.mkdir()
    Image.fromarray(photo).save(guides / "a.png")
    common = ["batch", "--guides", str(guides), "--model", "tiny-up", "--steps", "4", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "on")]) == 0
    assert main([*common, "--out", str(tmp_path / "off"), "--no-upscale"]) == 0
    on = json.loads(next((tmp_path / "on").rglob("a.json")).read_text())
    off = json.loads(next((tmp_path / "off").rglob("a.json")).read_text())
    assert on["upscaler"] == "tiny-up" and off["upscaler"] is None
    a, b = (np.asarray(Image.open(tmp_path / d / "a.png")) for d in ("on", "off"))
    assert a.shape == b.shape == photo.shape and not np.array_equal(a, b)


def test_the_app_shows_the_embedded_models_upscaled_result():
    """The studio's edit (jobs.run_edit -> pipe.postprocess) gives the 256 px result of the upscaler, not a
    resize of the 64 px canvas."""
    from sdedit import SDEditPipeline
    from sdedit.studio.jobs import EditSettings, run_edit

    settings = EditSettings(strength=0.5, steps=10, seed=5, num_samples=1)
    result = run_edit(EX / "strokes-heart.png", None, settings, animate=False, batch=False)
    img = np.asarray(result.images[0])
    assert img.shape == (256, 256, 3) and result.metadata["upscaler"] == "fluent-emoji-upscaler-4x"
    pipe = SDEditPipeline.from_pretrained(None)
    kw = dict(strength=0.5, num_inference_steps=10, seed=5, output_type="uint8", progress=False)
    resized = pipe(EX / "strokes-heart.png", upscale=False, **kw)
    assert np.array_equal(img, pipe(EX / "strokes-heart.png", **kw).images[0])
    assert np.abs(img.astype(int) - resized.images[0]).mean() > 0.5

    def sharpness(a: np.ndarray) -> float:  # mean absolute Laplacian of the luma
        g = a.astype(np.float64).mean(-1)
        return float(np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]).mean())

    assert sharpness(img) > sharpness(resized.images[0])


# ----- the trainer -----------------------------------------------------------------------------------------
def _images(folder: Path, n: int = 10, size: int = 32) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((size, size, 3), 255, np.uint8)
        x, y, r = rng.integers(6, size - 6, 3)
        yy, xx = np.mgrid[0:size, 0:size]
        img[(yy - y) ** 2 + (xx - x) ** 2 < (r // 2 + 3) ** 2] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
    return folder


def _train_yaml(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "train-upscaler-tiny.yaml"
    path.write_text(
        f"name: tiny-upscaler\ndata: {data}\noutput_dir: {tmp_path / 'run'}\nresolution: 32\nscale: 4\n"
        "held_out_fraction: 0.2\nmonitor_fraction: 0.2\nmodel: {kind: edsr, channels: 8, blocks: 1}\n"
        "patch: 4\nbatch_size: 4\nwarmup_steps: 2\nmax_steps: 3\ncheckpoint_every: 2\nmonitor_every: 2\n"
        "grid_images: 2\nthreads: 1\n"
    )
    return path


def test_trainer_smoke_resume_and_export(tmp_path):
    from sdedit.cli import main

    config = _train_yaml(tmp_path, _images(tmp_path / "imgs"))
    assert main(["train-upscaler", "--config", str(config)]) == 0
    model = tmp_path / "run" / "model"
    for name in ("config.json", "model.safetensors", "README.md", "samples.png", "training.json"):
        assert (model / name).is_file(), name
    card = json.loads((model / "training.json").read_text())
    assert card["steps"] == 3 and card["monitor"][0]["step"] == 2 and card["monitor_psnr"] is not None
    assert "3 steps" in (model / "README.md").read_text()
    assert Image.open(model / "samples.png").size[0] > 4 * 32  # four columns: input, bicubic, ours, original
    # resume: a second call continues from step 3 to 5, and each run is recorded
    assert main(["train-upscaler", "--config", str(config), "--max-steps", "5"]) == 0
    card = json.loads((model / "training.json").read_text())
    assert card["steps"] == 5 and [(r["from_step"], r["to_step"]) for r in card["runs"]] == [(0, 3), (3, 5)]
    # export-only writes the last checkpoint's EMA weights where asked; the folder loads and upscales
    assert main(["train-upscaler", "--config", str(config), "--export-only", "--export-to", str(tmp_path / "x")]) == 0
    up = load_upscaler(tmp_path / "x")
    assert up.upscale(np.zeros((1, 8, 8, 3), np.uint8)).shape == (1, 32, 32, 3)


def test_trainer_never_sees_the_held_out_images(tmp_path):
    from sdedit.lab.data import load_folder
    from sdedit.lab.upscaler import UpscalerTrainConfig, UpscalerTrainer

    data = load_folder(_images(tmp_path / "imgs", n=12), 32, "pad", 0.3)
    assert data.held_out.any() and not data.held_out.all()
    cfg = UpscalerTrainConfig.from_yaml(_train_yaml(tmp_path, tmp_path / "imgs"), held_out_fraction=0.3)
    trainer = UpscalerTrainer(cfg, images=data)
    seen = {im.tobytes() for im in np.concatenate([trainer.hr, trainer.monitor_hr])}
    assert not any(im.tobytes() in seen for im in data.images[data.held_out])
    assert len(trainer.hr) + len(trainer.monitor_hr) == (~data.held_out).sum()
    x, y = trainer.batch()
    assert x.shape == (4, 3, 4, 4) and y.shape == (4, 3, 16, 16) and x.min() >= 0 and y.max() <= 1


def test_trainer_config_rejects_unknown_keys_and_degradations(tmp_path):
    from sdedit.lab.upscaler import UpscalerTrainConfig

    path = tmp_path / "t.yaml"
    path.write_text("name: x\nlearning_rte: 0.1\n")
    with pytest.raises(ValueError, match="learning_rte"):
        UpscalerTrainConfig.from_yaml(path)
    path.write_text("name: x\ndegradation: jpeg\n")
    with pytest.raises(ValueError, match="degradation"):
        UpscalerTrainConfig.from_yaml(path)


def test_psnr_and_ssim():
    from sdedit.lab.upscaler import psnr, ssim

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(ssim(a, a), 1.0) and (psnr(a, a) > 90).all()
    noisy = np.clip(a.astype(int) + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)
    p = psnr(noisy, a)
    assert ((p > 27) & (p < 30)).all()  # sigma 10: about 28 dB
    assert (ssim(noisy, a) < 1).all()
    # two flat images: no variance, so SSIM is the luminance term (2 mx my + C1) / (mx^2 + my^2 + C1)
    x, y, c1 = 128.0, 168.0, (0.01 * 255) ** 2
    flat = np.full((1, 32, 32, 3), 128, np.uint8)
    assert np.isclose(ssim(flat, flat + 40)[0], (2 * x * y + c1) / (x * x + y * y + c1))
