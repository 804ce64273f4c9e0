"""Pick for me: ranking one edit's samples and auto strength (sdedit.ranking) are deterministic, say why, and
cost a stated amount of work: counted network evaluations and judge calls, not time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from sdedit import ranking
from sdedit.judges import load_identity_net, realism_scorer
from sdedit.ranking import Judge, Scores, candidates, choose_strength, rank, run_auto


def scores(realism, faithfulness, identity) -> Scores:
    return Scores(np.array(realism, float), np.array(faithfulness, float), np.array(identity, float), 9.0)


def test_ranking_puts_results_that_keep_the_drawing_first_then_by_their_ranks():
    k = ranking.KEEPS_IDENTITY
    s = scores([5.0, 6.0, 4.0, 7.0], [10.0, 9.0, 12.0, 8.0], [k + 0.2, k + 0.1, k - 0.1, k + 0.3])
    r = rank(s)
    # sample 2 is the most realistic but strays from the drawing: last. Of the others, rank sums:
    # 0: realism 2, faith 3, identity 2 = 7; 1: 3 + 2 + 3 = 8; 3: 4 + 1 + 1 = 6
    assert r.order == [3, 0, 1, 2]
    assert r.words[0].startswith("1st: ") and "closest to your drawing's colours" in r.words[0]
    assert "most like what you drew" in r.words[0] and "least realistic" in r.words[0]
    assert r.words[-1].startswith("4th: ") and "most realistic" in r.words[-1] and "strays" in r.words[-1]
    assert r.words[1] == "2nd: between the others on every measure"
    rows = r.as_dict()
    assert [row["sample"] for row in rows] == r.order and rows[0]["place"] == 1
    again = rank(s)  # deterministic
    assert again.order == r.order and again.words == r.words


def test_ties_go_to_the_more_realistic_then_the_earlier_sample():
    r = rank(scores([5.0, 5.0, 4.0], [1.0, 1.0, 1.0], [0.9, 0.9, 0.9]))
    assert r.order == [2, 0, 1]


def test_auto_strength_takes_the_most_realistic_t0_that_keeps_the_drawing_else_the_lowest():
    k = ranking.KEEPS_IDENTITY
    tried = [0.3, 0.4, 0.5, 0.6]
    s = scores([9.0, 8.0, 7.0, 6.0], [1, 2, 3, 4], [k + 0.1, k + 0.1, k + 0.05, k - 0.05])
    i, why = choose_strength(tried, s)
    assert tried[i] == 0.5 and "most realistic" in why and "0.3, 0.4, 0.5, 0.6" in why
    i, why = choose_strength(tried, scores([9, 8, 7, 6], [1, 2, 3, 4], [k - 0.1] * 4))
    assert tried[i] == 0.3 and "none" in why


def test_candidates_cover_the_models_follows_range():
    assert candidates((0.3, 0.6)) == [0.3, 0.4, 0.5, 0.6]
    assert candidates((0.4, 0.4)) == [0.4]
    assert candidates(None) == [0.3, 0.4, 0.5, 0.6]


@pytest.fixture(scope="module")
def judge():
    return Judge(realism_scorer(), load_identity_net())


def test_a_ranking_costs_one_call_of_each_judge_on_the_guide_and_its_samples(judge, rng):
    guide = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    results = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    f0, fi0 = judge.realism.extractor.calls, judge.realism.extractor.images
    i0, ii0 = judge.identity.calls, judge.identity.images
    s = judge.score(guide, results)
    assert (judge.realism.extractor.calls - f0, judge.realism.extractor.images - fi0) == (1, 5)
    assert (judge.identity.calls - i0, judge.identity.images - ii0) == (1, 5)
    # the measures against a slow, obvious reference
    for k, r in enumerate(results):
        assert s.faithfulness[k] == pytest.approx(np.linalg.norm(r / 255.0 - guide / 255.0))
    assert s.realism == pytest.approx(judge.realism.distance(results))
    e = judge.identity.embed([guide, *results])
    assert s.identity == pytest.approx(e[1:] @ e[0])
    # the guide itself: the most like itself, identical at distance 0
    same = judge.score(guide, [guide])
    assert same.faithfulness[0] == 0 and same.identity[0] == pytest.approx(1.0)


class Counted:
    """Counts the network evaluations of one image (batch rows) that a pipeline's UNet runs."""

    def __init__(self, unet):
        self.n = 0
        unet.register_forward_hook(lambda m, args, out: setattr(self, "n", self.n + args[0].shape[0]))


def test_auto_strength_costs_its_probes_and_equals_a_plain_edit_at_the_t0_it_picks(vp_pipe, judge, rng):
    pipe = vp_pipe
    counter = Counted(pipe.unet)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    settings = pipe.check_inputs(num_inference_steps=10, num_images=3)
    guide = pipe.prepare(image, None, settings.fit)
    tried = [0.3, 0.4, 0.5, 0.6]
    calls = judge.realism.extractor.calls, judge.identity.calls
    choice, samples = run_auto(pipe, guide, settings, [7, 8, 9], judge, tried)
    # work: one probe per t0 (3 + 4 + 5 + 6 steps) and the two other samples at the chosen t0; one call per judge
    steps = {0.3: 3, 0.4: 4, 0.5: 5, 0.6: 6}
    assert counter.n == sum(steps.values()) + 2 * steps[choice.strength]
    assert counter.n == ranking.evaluations_of_auto(pipe, settings, tried, choice.strength)
    assert (judge.realism.extractor.calls - calls[0], judge.identity.calls - calls[1]) == (1, 1)
    assert choice.tried == tried and choice.strength in tried and len(choice.scores) == 4
    assert samples.canvases.shape == (3, 16, 16, 3) and samples.seeds == [7, 8, 9]
    # the same as a plain edit at the chosen t0 with those seeds (same batch shapes: bit for bit)
    chosen = replace(settings, strength=choice.strength)
    first = pipe.run([guide], replace(chosen, num_images=1), [7])
    rest = pipe.run([guide, guide], chosen, [8, 9])
    assert np.array_equal(samples.canvases, np.concatenate([first.canvases, rest.canvases]))
    # and deterministic
    again_choice, again = run_auto(pipe, guide, settings, [7, 8, 9], judge, tried)
    assert again_choice.as_dict() == choice.as_dict()
    assert torch.equal(again.x, samples.x)


def test_pick_returns_the_samples_best_first_and_says_why(vp_pipe, judge, rng):
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    plain = vp_pipe(image, num_images=3, seed=5, num_inference_steps=10, output_type="uint8", progress=False)
    out = ranking.pick(vp_pipe, image, num_images=3, seed=5, num_inference_steps=10, output_type="uint8", judge=judge)
    order = [row["sample"] for row in out.metadata["ranking"]]
    assert sorted(order) == [0, 1, 2] and [row["seed"] for row in out.metadata["ranking"]] == [5 + i for i in order]
    assert np.array_equal(out.images, plain.images[order])  # the same samples, reordered
    auto = ranking.pick(vp_pipe, image, num_images=1, seed=5, num_inference_steps=10, auto_strength=True, judge=judge)
    assert auto.metadata["strength"] == auto.metadata["auto_strength"]["strength"] and "ranking" not in auto.metadata


def test_the_threshold_is_the_benchmarks_record():
    """KEEPS_IDENTITY is what the freehand benchmark measured (eval/freehand.json)."""
    from sdedit.lab.freehand import load

    assert load()["keeps_identity"]["threshold"] == ranking.KEEPS_IDENTITY
