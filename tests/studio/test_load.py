"""The bounded load test against the live app (`python app.py` in a subprocess, 127.0.0.1 only).

This is the quick form of `python -m benchmarks.app_load` (about 1.5 minutes on 2 cores): 16 concurrent
gradio_client users, 3 rounds of mixed valid and invalid requests, a burst past the queue's size, and a
cancelled request. It asserts behaviour, never speed; the full form records the figures in
docs/reliability.md and docs/performance.md.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report():
    from benchmarks.app_load import run

    return run(quick=True)


def test_valid_requests_never_fail_and_invalid_ones_get_their_message(report):
    rel = report["reliability"]
    assert rel["users"] == 16 and len(rel["rounds"]) == 3
    total = rel["total"]
    assert total["valid"] >= 40 and total["invalid"] >= 40
    assert total["valid_error_rate"] == 0, total["failures"]
    assert total["invalid_unclear"] == 0, total["failures"]
    assert total["p50_s"] is not None and total["p95_s"] >= total["p50_s"]
    # concurrent requests with matching settings shared forwards
    assert total["mean_batched_requests"] > 1.5


def test_memory_stays_bounded_across_rounds(report):
    rel = report["reliability"]
    assert rel["rss_growth_mb"] < 150, [r["rss_mb"] for r in rel["rounds"]]
    assert rel["vm_hwm_mb"] < 4000


def test_a_full_queue_answers_busy_at_once_and_never_hangs(report):
    q = report["queue_full"]
    assert q["hung"] == 0 and not q["errors"], q
    assert q["queue_full"] >= 1 and q["done"] + q["queue_full"] == q["sent"], q
    assert q["client_message"] == "Queue is full! Please try again."
    assert q["raw_detail"].startswith("Queue is full. Max size is 16")


def test_a_cancelled_request_frees_its_slot(report):
    c = report["cancel"]
    assert c["long_started"] and c["next_request_s"] < 30  # the cancelled one alone would take about a minute


def test_the_first_request_after_launch_needs_no_long_warm_up(report):
    first = report["first_request_warm"]
    assert first["first_s"] < max(10.0, 4 * first["next_median_s"]), first
