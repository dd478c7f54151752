"""The D1 sandbox as reconciliation tests use it: a `serve` process and its truth."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d1sandbox.keys import KeyPairFiles
from d1sandbox.state import ItemKey, StateStore
from d1sandbox.testing import PROJECT_ROOT, SandboxProcess

ROOT = PROJECT_ROOT


@dataclass
class Sandbox:
    """A running sandbox, the key pair it trusts and the state file it answers from."""

    process: SandboxProcess
    keys: KeyPairFiles
    state_path: Path

    @property
    def url(self) -> str:
        return self.process.url

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
        self.process.faults(**changes)

    def stats(self) -> dict[str, Any]:
        return self.process.stats()

    def reset(self) -> None:
        self.process.reset()

    def portal_settings(self) -> dict[str, str]:
        """The D1_* settings that point the portal's client at this sandbox."""
        return {
            "D1_API_BASE_URL": self.process.api_base_url,
            "D1_TOKEN_URL": self.process.token_url,
            "D1_KEY_ID": self.keys.key_id,
            "D1_PRIVATE_KEY_PATH": str(self.keys.private_key_path),
        }


def sandbox_verify(*, portal_url: str, token: str, state_path: Path, env) -> tuple[int, str]:
    """Run `python -m d1sandbox verify` as a process; its exit status and its output."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "d1sandbox",
            "verify",
            "--portal",
            portal_url,
            "--token",
            token,
            "--state",
            str(state_path),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr
