"""The launched app for a module's tests: its address and a gradio_client on it (a module that needs another
environment, e.g. text models' configs, overrides `app_url`)."""

from __future__ import annotations

import pytest

from tests.app_server import running_app


@pytest.fixture(scope="module")
def app_url():
    with running_app() as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)
