"""Fixtures for reconciliation tests: the D1 sandbox served over real HTTP, and its truth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from d1sandbox.keys import key_pair_ensure
from tests.reconcile.sandbox import Sandbox, sandbox_serve


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("d1sandbox")
    key_pair = key_pair_ensure(directory=directory / "keys")
    process, url = sandbox_serve(directory=directory)
    try:
        yield Sandbox(
            url=url,
            keys_dir=key_pair.directory,
            key_id=key_pair.key_id,
            state_path=directory / "state.sqlite3",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def d1(sandbox, settings) -> Sandbox:
    """The portal pointed at the sandbox, with fast client retries and no faults left over."""
    sandbox.reset()
    settings.D1_API_BASE_URL = f"{sandbox.url}/banking/v1"
    settings.D1_TOKEN_URL = f"{sandbox.url}/authz/v1/oauth2/token"
    settings.D1_KEY_ID = sandbox.key_id
    settings.D1_PRIVATE_KEY_PATH = str(sandbox.keys_dir / "private_key.pem")
    settings.D1_MAX_RETRIES = 1
    settings.D1_BACKOFF_BASE = 0.01
    settings.D1_BACKOFF_CAP = 0.02
    return sandbox
