"""The sampler registry: every row runs on the SDEs it declares, costs what its rule says, and is the one
list that configs, the CLI and the app read."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sdedit import registry
from sdedit.errors import InputError

CASES = [(name, sde) for name, spec in registry.SAMPLERS.items() for sde in spec.sdes]


def _counting(pipe):
    """Count the network's calls (each call evaluates the whole batch once)."""
    calls = []
    model_fn = pipe.model_fn

    def counted():
        fn = model_fn()

        def call(x, level):
            calls.append(x.shape[0])
            return fn(x, level)

        return call

    pipe.model_fn = counted
    return calls


@pytest.mark.parametrize(("name", "sde"), CASES)
@pytest.mark.parametrize("snr", [0.0, 0.075])
def test_each_sampler_runs_on_its_sdes_and_costs_what_its_rule_says(vp_pipe, ve_pipe, name, sde, snr):
    pipe = vp_pipe if sde == "vp" else ve_pipe
    if registry.get(name).for_distilled:  # offered to distilled models only: run it on one
        pipe = pipe.replace(config=replace(pipe.config, distilled="lcm"))
    calls = _counting(pipe)
    img = np.full((16, 16, 3), 100, np.uint8)
    out = pipe(img, strength=0.4, sampler=name, num_inference_steps=10, repeats=2, num_images=2, snr=snr,
               seed=0, progress=False, output_type="uint8")  # fmt: skip
    settings = pipe.check_inputs(strength=0.4, sampler=name, num_inference_steps=10, repeats=2, snr=snr)
    per_repeat = registry.evaluations(name, settings.steps, settings.snr, registry.corrector_steps(pipe), sde)
    assert len(calls) == 2 * per_repeat == out.metadata["model_evaluations"] == pipe.evaluations(settings)
    assert all(b == 2 for b in calls)  # both samples share every evaluation
    with_corrector = sde in registry.get(name).corrector and snr > 0
    assert per_repeat == settings.steps * (2 if with_corrector else 1)
    assert out.images.shape == (2, 16, 16, 3)


@pytest.mark.parametrize("sde", ["vp", "ve"])
def test_a_sampler_is_refused_on_an_sde_it_does_not_declare(vp_pipe, ve_pipe, sde):
    pipe = vp_pipe if sde == "vp" else ve_pipe
    for name, spec in registry.SAMPLERS.items():
        if sde not in spec.sdes:
            with pytest.raises(InputError, match="sampler must be one of"):
                pipe.check_inputs(sampler=name)


def test_configs_cli_and_app_read_the_registry(vp_pipe, ve_pipe):
    from sdedit.configs import model_configs

    assert vp_pipe.config.samplers == registry.names("vp")
    assert ve_pipe.config.samplers == registry.names("ve")
    for cfg in model_configs().values():
        assert cfg.samplers == registry.names(cfg.sde, distilled=cfg.distilled is not None)
        assert cfg.defaults.sampler in cfg.samplers and cfg.paper.sampler in cfg.samplers
    assert registry.sampler_choices("vp") == [(registry.label(n), n) for n in registry.names("vp")]


def test_one_default_steps_rule(vp_pipe, ve_pipe):
    """The config's choice for its default sampler, the paper's for the paper's, else the registry's."""
    assert vp_pipe.default_steps(vp_pipe.config.defaults.sampler) == vp_pipe.config.defaults.num_inference_steps
    assert vp_pipe.default_steps("reference") == 1000
    for name in registry.names("vp"):
        expected = registry.default_steps(name, 1000)
        if name not in (vp_pipe.config.defaults.sampler, vp_pipe.config.paper.sampler):
            assert vp_pipe.default_steps(name) == expected
        assert vp_pipe.check_inputs(sampler=name).num_inference_steps == vp_pipe.default_steps(name)
