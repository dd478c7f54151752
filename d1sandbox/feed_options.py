"""What `python -m d1sandbox feed` takes, one field per CLI flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from d1sandbox.state import DEFAULT_STATE_PATH

REGISTRATION_PATH = "/api/v1/orders/"


@dataclass(frozen=True)
class FeedOptions:
    """Everything `python -m d1sandbox feed` takes; the CLI flags map one to one."""

    portal_url: str
    issuer_ids: list[str]
    orders: int = 100
    seed: int = 1
    run_number: int | None = None
    duplicate: float = 0.05
    reorder: float = 0.05
    drop: float = 0.02
    batch_max: int = 5
    exception_rate: float = 0.05
    cancel_rate: float = 0.03
    unknown_rate: float = 0.05
    standalone_rate: float = 0.05
    failed_step_rate: float = 0.03
    no_details_rate: float = 0.02
    hold_completion_rate: float = 0.03
    reattempt_rate: float = 0.05
    prod_exception_rate: float = 0.02
    no_shipment_rate: float = 0.02
    update_order_rate: float = 0.05
    reissue_rate: float = 0.03
    silent_rate: float = 0.0
    late_copy: float = 0.05
    carrier_exception_rate: float = 0.03
    returned_rate: float = 0.02
    expired_rate: float = 0.01
    novel_word_rate: float = 0.05
    changed_copy_rate: float = 0.05
    japan_carrier_rate: float = 0.1
    offset_time_rate: float = 0.1
    zoneless_time_rate: float = 0.05
    numeric_id_rate: float = 0.2
    pair: float = 0.05
    no_shipment_issuers: list[str] = field(default_factory=list)
    time_scale: float = 1.0
    register: bool = False
    register_token: str | None = None
    concurrency: int = 1
    rate: float | None = None
    continuous: bool = False
    in_flight: int = 50
    epoch: datetime | None = None
    state_path: Path = DEFAULT_STATE_PATH
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = None
    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    timeout: float = 10.0

    def webhook_url(self, issuer_id: str) -> str:
        return f"{self.portal_url.rstrip('/')}/notifications/d1/v2/issuers/{issuer_id}/cards"

    def registration_url(self) -> str:
        return f"{self.portal_url.rstrip('/')}{REGISTRATION_PATH}"

    def portal_token_url(self) -> str:
        return self.token_url or f"{self.portal_url.rstrip('/')}/authz/d1/v1/oauth2/token"
