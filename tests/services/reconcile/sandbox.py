"""The D1 sandbox as reconciliation tests use it: a `serve` process and its truth."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d1sandbox.keys import KeyPairFiles
from d1sandbox.state import ItemKey, StateStore
from d1sandbox.testing import PROJECT_ROOT, SandboxProcess
from d1sandbox.verify import VerifyReport, verify_run

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
            f"--token={token}",
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


def sandbox_feed(
    *,
    portal_url: str,
    issuer_id: str,
    orders: int,
    state_path: Path,
    env,
    args: list[str],
    timeout: float = 180,
) -> str:
    """Run `python -m d1sandbox feed` to its end (4 connections); its output (it must succeed)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "d1sandbox",
            "feed",
            "--portal",
            portal_url,
            "--issuer",
            issuer_id,
            "--orders",
            str(orders),
            *args,
            "--concurrency",
            "4",
            "--state",
            str(state_path),
            "--log-level",
            "WARNING",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def sandbox_converge(
    *, portal_url: str, token: str, state_path: Path, seconds: float, visible: bool = False
) -> tuple[VerifyReport, float]:
    """Verify every two seconds until the portal shows D1's truth (and, with `visible`, every
    order), for at most `seconds`; assert it did. The last report and how long it took."""
    started = time.monotonic()
    report = None
    while time.monotonic() < started + seconds:
        report = verify_run(
            portal_url=portal_url, token=token, state_path=state_path, out=lambda _: None
        )
        if report.ok and not (visible and report.invisible):
            break
        time.sleep(2)
    assert report is not None
    assert report.ok and not (visible and report.invisible), "\n".join(
        report.mismatches[:40] + [f"invisible {label}" for label in report.invisible[:20]]
    )
    return report, time.monotonic() - started
