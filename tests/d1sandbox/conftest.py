"""Fixtures for the sandbox tests: a key folder, a state store, and a running `serve` process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from d1sandbox.keys import KeyPairFiles, key_pair_ensure
from d1sandbox.testing import SandboxProcess


@pytest.fixture(scope="session")
def sandbox_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPairFiles:
    return key_pair_ensure(directory=tmp_path_factory.mktemp("d1keys"))


@pytest.fixture(scope="module")
def sandbox_state_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("d1state") / "state.sqlite3"


@pytest.fixture(scope="module")
def sandbox_server(
    sandbox_keys: KeyPairFiles, sandbox_state_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SandboxProcess]:
    log_path = tmp_path_factory.mktemp("d1log") / "serve.log"
    with SandboxProcess(
        keys_dir=sandbox_keys.directory, state_path=sandbox_state_path, log_path=log_path
    ) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxProcess) -> SandboxProcess:
    """The module's sandbox with tokens, counters and faults back to their start values."""
    sandbox_server.reset()
    return sandbox_server
