"""Fixtures for reconciliation tests: the D1 sandbox served over real HTTP, and its truth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from d1sandbox.keys import key_pair_ensure
from d1sandbox.testing import SandboxProcess
from tests.services.reconcile.sandbox import Sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("d1sandbox")
    keys = key_pair_ensure(directory=directory / "keys")
    state_path = directory / "state.sqlite3"
    with SandboxProcess(
        keys_dir=keys.directory, state_path=state_path, log_path=directory / "serve.log"
    ) as process:
        yield Sandbox(process=process, keys=keys, state_path=state_path)


@pytest.fixture
def d1(sandbox, settings) -> Sandbox:
    """The portal pointed at the sandbox, with fast client retries and no faults left over."""
    sandbox.reset()
    for name, value in sandbox.portal_settings().items():
        setattr(settings, name, value)
    settings.D1_MAX_RETRIES = 1
    settings.D1_BACKOFF_BASE = 0.01
    settings.D1_BACKOFF_CAP = 0.02
    return sandbox
