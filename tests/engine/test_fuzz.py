"""Property-based fuzzing of everything a request can send before the model runs: images, masks, settings.

The contract under test: any input either works or raises an `SDEditError` subclass with a message; nothing
else escapes (no TypeError, ZeroDivisionError, PIL errors or numpy warnings turned errors).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from sdedit.errors import InputError, LimitError, SDEditError
from sdedit.imaging import FITS, composite, load_image, place, place_mask, to_rgb, unplace
from sdedit.masks import mask_from_strokes, refine, to_mask
from sdedit.pipeline import OUTPUT_TYPES

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

dims = st.integers(min_value=1, max_value=48)
dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, bool])


@st.composite
def image_arrays(draw):
    h, w = draw(dims), draw(dims)
    channels = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    shape = (h, w) if channels is None else (h, w, channels)
    dtype = draw(dtypes)
    if dtype in (np.float32, np.float64):
        elements = st.one_of(st.floats(-2, 2, width=32), st.sampled_from([np.nan, np.inf, -np.inf]))
    elif dtype is bool:
        elements = st.booleans()
    else:
        elements = st.integers(0, 255)
    return draw(arrays(dtype, shape, elements=elements))


@FUZZ
@given(image_arrays())
def test_any_array_is_accepted_or_refused_clearly(array):
    try:
        img = to_rgb(load_image(array))
    except InputError as exc:
        assert str(exc)
        return
    assert img.mode == "RGB" and img.size == (array.shape[1], array.shape[0])


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_are_accepted_or_refused_clearly(data):
    try:
        load_image(data)
    except SDEditError as exc:
        assert str(exc)


@FUZZ
@given(st.integers(0, 4096), st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]))
def test_truncated_files_of_every_format_are_refused_clearly(cut, fmt):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(cut).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decoder that only warns about truncation must not slip through
        try:
            img = load_image(data[: min(cut, len(data))])
        except SDEditError:
            return
    assert img.size == (24, 24)


@FUZZ
@given(st.integers(8, 300), st.integers(8, 300), st.sampled_from(FITS), st.sampled_from([16, 64]))
def test_place_and_unplace_keep_the_input_size(w, h, fit, resolution):
    assume(max(w, h) / min(w, h) <= 16)
    img = Image.new("RGB", (w, h), (10, 20, 30))
    canvas, placement = place(img, resolution, fit, (255, 255, 255))
    assert canvas.size == (resolution, resolution)
    left, top, right, bottom = placement.box
    assert 0 <= left < right and 0 <= top < bottom
    back = unplace(np.asarray(canvas), placement, np.asarray(img))
    assert back.shape == (h, w, 3)
    m = place_mask(np.ones((h, w), np.float32), placement)
    assert m.shape == (resolution, resolution) and m.min() >= 0 and m.max() <= 1


@FUZZ
@given(arrays(np.float32, (12, 10), elements=st.one_of(st.floats(-1, 2, width=32), st.just(np.nan))))
def test_masks_are_valid_or_refused(raw):
    try:
        m = to_mask(raw, (10, 12))
    except InputError:
        assert not np.isfinite(raw).all() or raw.min() < 0 or raw.max() > 1
        return
    assert m.dtype == np.float32 and m.shape == (12, 10) and m.min() >= 0 and m.max() <= 1


@FUZZ
@given(
    arrays(np.uint8, (10, 12, 3)),
    arrays(np.uint8, (10, 12, 3)),
    arrays(np.float32, (10, 12), elements=st.floats(0, 1, width=32)),
)
def test_composite_is_exact_wherever_the_mask_is_zero(guide, result, mask):
    mask[::2] = 0
    out = composite(guide, result, mask)
    assert out.dtype == np.uint8
    assert np.array_equal(out[mask == 0], guide[mask == 0])
    assert np.array_equal(out[mask == 1], result[mask == 1])


@FUZZ
@given(arrays(np.uint8, (12, 14, 3)), arrays(np.uint8, (12, 14, 3)), st.integers(0, 5), st.floats(0, 6))
def test_stroke_masks_cover_every_changed_pixel(a, b, dilation, feathering):
    m = mask_from_strokes(a, b, threshold=8, dilation=dilation, feathering=feathering)
    changed = np.abs(a.astype(int) - b.astype(int)).max(-1) > 8
    assert m.shape == (12, 14) and np.all(m[changed] == 1) and m.min() >= 0 and m.max() <= 1
    assert np.array_equal(refine(m, 0, 0), m)


# ----- settings: each valid one works, each invalid one is refused by its own rule ---------------------------

VALID_SAMPLERS = ("reference", "dpmpp", "ddim", "euler_a")  # the tiny VP model's (conftest.vp_pipe)
VALID = {
    "strength": st.one_of(st.floats(1e-6, 1.0), st.just(1), st.sampled_from(["0.5", "1"])),
    "num_inference_steps": st.one_of(st.integers(1, 1000), st.integers(1, 1000).map(float), st.just("20")),
    "sampler": st.sampled_from(VALID_SAMPLERS),
    "repeats": st.integers(1, 10),
    "num_images": st.integers(1, 8),  # 8 x 1000 steps x 10 repeats stays under the work limit
    "snr": st.one_of(st.floats(0.0, 1.0), st.just(0)),
    "fit": st.sampled_from(FITS),
    "output_type": st.sampled_from(OUTPUT_TYPES),
}
NOT_A_NUMBER = st.one_of(st.booleans(), st.text(alphabet="abc,; ", max_size=4), st.lists(st.integers(0, 3), max_size=2))
NOT_FINITE = st.sampled_from([float("nan"), float("inf"), -float("inf")])
NOT_WHOLE = st.floats(1.01, 999.99).filter(lambda x: not x.is_integer())
INVALID = {
    "strength": st.one_of(
        st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), NOT_FINITE, NOT_A_NUMBER
    ),
    "num_inference_steps": st.one_of(st.integers(-(10**6), 0), st.integers(1001, 10**6), NOT_WHOLE, NOT_A_NUMBER),
    "sampler": st.one_of(st.text(max_size=8).filter(lambda x: x not in VALID_SAMPLERS), st.integers(), st.booleans()),
    "repeats": st.one_of(st.integers(-(10**6), 0), st.integers(11, 10**6), NOT_WHOLE, NOT_FINITE, NOT_A_NUMBER),
    "num_images": st.one_of(st.integers(-(10**6), 0), st.integers(65, 10**6), NOT_WHOLE, NOT_A_NUMBER),
    "snr": st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0, exclude_min=True), NOT_FINITE, NOT_A_NUMBER),
    "fit": st.one_of(st.text(max_size=8).filter(lambda x: x not in FITS), st.integers(), st.just(None).map(str)),
    "output_type": st.one_of(st.text(max_size=8).filter(lambda x: x not in OUTPUT_TYPES), st.integers(), st.none()),
}


def _check(pipe, values: dict):
    return pipe.check_inputs(**values)


@FUZZ
@given(st.fixed_dictionaries(VALID))
def test_valid_settings_are_accepted_as_given(vp_pipe, values):
    s = _check(vp_pipe, values)
    assert s.strength == float(values["strength"]) and s.sampler == values["sampler"]
    assert s.num_inference_steps == int(float(values["num_inference_steps"]))
    assert (s.repeats, s.num_images, s.fit, s.output_type) == (
        values["repeats"],
        values["num_images"],
        values["fit"],
        values["output_type"],
    )
    assert s.snr == 0.0  # the corrector is the VE sampler's only: a VP model turns it off, it does not refuse
    assert s.steps >= 1


@FUZZ
@given(st.fixed_dictionaries(VALID), st.sampled_from(sorted(INVALID)), st.data())
def test_each_invalid_setting_is_refused_by_its_own_rule(vp_pipe, values, field, data):
    bad = data.draw(INVALID[field], label=field)
    with pytest.raises(InputError) as refused:
        _check(vp_pipe, {**values, field: bad})
    message = str(refused.value)
    assert message.startswith(field), f"{field}={bad!r} was refused by another rule: {message}"
    assert repr(bad) in message or str(bad) in message or field == "strength", message  # it says what it got


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 3), max_size=2),
)


@FUZZ
@given(st.fixed_dictionaries({name: anything for name in VALID}))
def test_any_settings_are_validated_without_surprises(vp_pipe, values):
    """Whatever arrives, check_inputs answers with settings in range or an InputError; nothing else escapes."""
    try:
        s = _check(vp_pipe, values)
    except InputError as exc:
        assert str(exc)
        return
    assert 0 < s.strength <= 1 and 1 <= s.num_inference_steps <= 1000 and 1 <= s.repeats <= 10
    assert 1 <= s.num_images <= 64 and s.sampler in vp_pipe.config.samplers and s.steps >= 1


def test_work_over_the_limit_is_refused_by_the_work_rule(vp_pipe):
    settings = dict(strength=1.0, num_inference_steps=1000, sampler="reference", repeats=10)
    assert _check(vp_pipe, {**settings, "num_images": 8}).num_images == 8  # 80,000 evaluations: allowed
    with pytest.raises(LimitError, match="network evaluations"):
        _check(vp_pipe, {**settings, "num_images": 64})  # 640,000
    with pytest.raises(LimitError, match="guides x"):
        vp_pipe.check_inputs(num_images=8, num_guides=9)  # 72 samples in one batch


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16"])
def test_every_pil_mode_flattens_to_rgb(mode):
    img = Image.new(mode, (9, 9))
    assert to_rgb(load_image(img)).mode == "RGB"
