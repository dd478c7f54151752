"""Starts `python -m d1sandbox serve` as a real process on a free port, for tests and benchmarks."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "d1sandbox serve: listening on "


class SandboxProcess:
    """A running sandbox server; `url` is its base (http(s)://127.0.0.1:PORT)."""

    def __init__(
        self,
        *,
        keys_dir: Path,
        state_path: Path,
        log_path: Path,
        extra_args: list[str] | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "d1sandbox",
            "serve",
            "--port",
            "0",
            "--keys",
            str(keys_dir),
            "--state",
            str(state_path),
            *(extra_args or []),
        ]
        environment = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.url = self._wait_ready(timeout=startup_timeout)

    def _wait_ready(self, *, timeout: float) -> str:
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if readable else ""
        if not line.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(
                f"sandbox did not start: {line!r}; log: {self.log_path.read_text()[-2000:]}"
            )
        return line[len(READY_PREFIX) :].strip()

    @property
    def api_base_url(self) -> str:
        return f"{self.url}/banking/v1"

    @property
    def token_url(self) -> str:
        return f"{self.url}/authz/v1/oauth2/token"

    def control(self, method: str, name: str, payload: dict[str, Any] | None = None, **kw: Any):
        """Call a /_sandbox/ endpoint (only over plain HTTP sandboxes, or pass verify/cert)."""
        timeout = kw.pop("timeout", 10)
        url = f"{self.url}/_sandbox/{name}"
        response = requests.request(method, url, json=payload, timeout=timeout, **kw)
        response.raise_for_status()
        return response.json()

    def stats(self, **kw: Any) -> dict[str, Any]:
        return self.control("GET", "stats", **kw)

    def faults(self, **changes: Any) -> dict[str, Any]:
        return self.control("POST", "faults", changes)

    def revoke_tokens(self) -> int:
        return int(self.control("POST", "revoke-tokens")["revoked"])

    def reset(self) -> None:
        self.control("POST", "reset")

    def answer_shapes(self, **shapes: str) -> dict[str, str]:
        """Make productionStatus answer these issuers "bare", as a "list" or with "operations"."""
        return self.control("POST", "answer-shapes", shapes)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
