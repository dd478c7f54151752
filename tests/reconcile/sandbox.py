"""The D1 sandbox as tests use it: `serve` on a free port, and its truth written directly."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from d1sandbox.state import ItemKey, StateStore

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Sandbox:
    """A running `python -m d1sandbox serve` and the files it shares with the test."""

    url: str
    keys_dir: Path
    key_id: str
    state_path: Path

    def truth_record(self, *, issuer_id: str, items: list[dict[str, Any]]) -> None:
        """Make `items` (in lifecycle order) what D1 knows; productionStatus returns the last."""
        store = StateStore(self.state_path)
        try:
            store.items_record(
                run_id=1,
                happenings=[
                    (ItemKey(issuer_id, item["cardId"], item["operationId"], step), item, False)
                    for step, item in enumerate(items)
                ],
            )
        finally:
            store.close()

    def faults(self, **changes: Any) -> None:
        requests.post(f"{self.url}/_sandbox/faults", json=changes, timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sandbox/stats", timeout=5).json()

    def reset(self) -> None:
        requests.post(f"{self.url}/_sandbox/reset", timeout=5).raise_for_status()


def sandbox_serve(*, directory: Path, extra_args: tuple[str, ...] = ()) -> tuple[Any, str]:
    """Start the sandbox on a free port; returns the process and its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "d1sandbox",
            "serve",
            "--port",
            "0",
            "--keys",
            str(directory / "keys"),
            "--state",
            str(directory / "state.sqlite3"),
            "--log-level",
            "WARNING",
            *extra_args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"the sandbox did not start: {line!r}")
    return process, line.rsplit(" ", 1)[-1].strip()
