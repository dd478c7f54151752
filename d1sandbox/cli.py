"""Command line of the sandbox: keys, serve, feed, verify and receiver (`--help`)."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from d1sandbox.state import DEFAULT_STATE_PATH

DEFAULT_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8090
ISSUER_ID = re.compile(r"^[A-Za-z0-9_-]{10}$")


def _issuer_id(value: str) -> str:
    if not ISSUER_ID.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a 10-character D1 issuerId")
    return value


def _fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


# The variations of orders that `feed` draws, as (flag, default, help).
FEED_VARIATIONS = (
    (
        "--failed-step-rate",
        0.03,
        "fraction of orders FAILED at a normal production step, each followed on the wire by "
        "a late PENDING copy of that step",
    ),
    (
        "--no-details-rate",
        0.02,
        "fraction of orders whose FAILED result comes without details",
    ),
    (
        "--hold-completion-rate",
        0.03,
        "fraction of orders with a CARD_PROD_ON_HOLD that ends in the completion",
    ),
    (
        "--reattempt-rate",
        0.05,
        "fraction of orders whose parcel goes back in transit after out-for-delivery",
    ),
    ("--prod-exception-rate", 0.02, "fraction of orders ending in CARD_PROD_EXCEPTION"),
    (
        "--no-shipment-rate",
        0.02,
        "fraction of orders that complete at CARD_PROD_DONE (no shipment service)",
    ),
    (
        "--update-order-rate",
        0.05,
        "fraction of orders with a pull & change request answered by UPDATE_ORDER "
        "(an accepted CANCEL then cancels the order)",
    ),
    (
        "--reissue-rate",
        0.03,
        "fraction of orders whose card is ordered again (a second PRODUCE operation, same "
        "cardId) once the first ended",
    ),
    (
        "--silent-rate",
        0.0,
        "fraction of orders whose every notification is dropped",
    ),
    (
        "--late-copy",
        0.05,
        "fraction of completed orders whose earlier PENDING item is sent again after the end",
    ),
    (
        "--carrier-exception-rate",
        0.03,
        "fraction of orders whose shipment ends in a carrier exception (Exception_004, ...)",
    ),
    (
        "--returned-rate",
        0.02,
        "fraction of orders whose parcel goes back to its sender after a failed attempt",
    ),
    ("--expired-rate", 0.01, "fraction of orders whose carrier stops tracking (Expired)"),
    (
        "--novel-word-rate",
        0.05,
        "fraction of shipments with a carrier word no table knows (HeldAtCustoms, Sorting) mid-way",
    ),
    (
        "--changed-copy-rate",
        0.05,
        "fraction of shipments whose last carrier update comes again with a new message and "
        "the same times",
    ),
    (
        "--japan-carrier-rate",
        0.1,
        "fraction of orders carried by japan-post, yamato or sagawa",
    ),
    ("--offset-time-rate", 0.1, "fraction of orders whose times are written with +09:00"),
    (
        "--zoneless-time-rate",
        0.05,
        "fraction of orders whose times carry no zone (UTC wall time: the issuer's zone by "
        "default)",
    ),
    (
        "--numeric-id-rate",
        0.2,
        "fraction of orders with a 16-digit Luhn-valid cardId and digit-run issuerRequestIds",
    ),
    (
        "--pair",
        0.05,
        "fraction of items sent in the same POST as the next item of their operation",
    ),
)


def _timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m d1sandbox",
        description="A stand-in for Thales D1: serves its token and productionStatus APIs, "
        "feeds card-order notifications to the portal, and checks what the portal believes.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the sandbox's log lines on stderr (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = commands.add_parser(
        "keys",
        parents=[common],
        help="create the issuer's ES256 key pair and print the portal's D1_* settings",
    )
    keys.add_argument("directory", type=Path, metavar="DIR", help="folder for the key files")
    keys.add_argument(
        "--api-port",
        type=int,
        default=DEFAULT_API_PORT,
        help=f"port `serve` listens on, used in the printed URLs (default {DEFAULT_API_PORT})",
    )
    keys.add_argument(
        "--host", default=DEFAULT_HOST, help=f"host in the printed URLs (default {DEFAULT_HOST})"
    )

    serve = commands.add_parser(
        "serve", parents=[common], help="serve D1's token endpoint and productionStatus"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_API_PORT,
        help=f"port to listen on; 0 picks a free one (default {DEFAULT_API_PORT})",
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--keys",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="key folder made by `keys`; repeat for several kids",
    )
    serve.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE_PATH,
        help=f"state store shared with feed and verify (default {DEFAULT_STATE_PATH})",
    )
    serve.add_argument(
        "--token-ttl",
        type=_positive_int,
        default=900,
        metavar="SECONDS",
        help="lifetime of the access tokens handed out (default 900, as D1)",
    )
    serve.add_argument(
        "--rate-429",
        type=_fraction,
        default=0.0,
        metavar="R",
        help="fraction of productionStatus calls answered 429 with Retry-After (default 0)",
    )
    serve.add_argument(
        "--rate-5xx",
        type=_fraction,
        default=0.0,
        metavar="R",
        help="fraction of productionStatus calls answered with --status-5xx (default 0)",
    )
    serve.add_argument(
        "--status-5xx",
        type=int,
        default=503,
        choices=[500, 502, 503, 504],
        help="status used for injected server errors (default 503)",
    )
    serve.add_argument(
        "--retry-after",
        type=int,
        default=1,
        metavar="SECONDS",
        help="Retry-After sent with injected 429s (default 1)",
    )
    serve.add_argument(
        "--latency-ms",
        type=int,
        default=0,
        metavar="N",
        help="delay added before answering each productionStatus call (default 0)",
    )
    serve.add_argument(
        "--bare-answer-issuer",
        type=_issuer_id,
        action="append",
        default=[],
        metavar="ID",
        help="answer this issuer's productionStatus with the bare operation object instead of "
        '{"operations": [...]}; repeatable',
    )
    serve.add_argument(
        "--list-answer-issuer",
        type=_issuer_id,
        action="append",
        default=[],
        metavar="ID",
        help="answer this issuer's productionStatus with a list of operations; repeatable",
    )
    serve.add_argument("--tls-cert", type=Path, metavar="F", help="server certificate (PEM): HTTPS")
    serve.add_argument("--tls-key", type=Path, metavar="F", help="private key of --tls-cert (PEM)")
    serve.add_argument(
        "--client-ca",
        type=Path,
        metavar="F",
        help="CA bundle (PEM): require and verify a client certificate (mTLS)",
    )

    feed = commands.add_parser(
        "feed", parents=[common], help="drive card orders and POST notifications to the portal"
    )
    feed.add_argument("--portal", required=True, metavar="URL", help="portal base URL")
    feed.add_argument(
        "--issuer",
        type=_issuer_id,
        action="append",
        required=True,
        metavar="ID",
        help="issuerId to feed (10 characters); repeat for several issuers",
    )
    feed.add_argument(
        "--orders",
        type=_positive_int,
        default=100,
        metavar="N",
        help="orders per run; with --continuous, orders on their way at any moment (default 100)",
    )
    feed.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="S",
        help="random seed; same seed + flags = same notifications (default 1)",
    )
    feed.add_argument(
        "--run",
        type=_positive_int,
        metavar="N",
        help="run number used in the ids (default: one more than the last run of this seed "
        "in the state store)",
    )
    feed.add_argument(
        "--duplicate",
        type=_fraction,
        default=0.05,
        metavar="R",
        help="fraction of items sent twice, in the same batch or later (default 0.05)",
    )
    feed.add_argument(
        "--reorder",
        type=_fraction,
        default=0.05,
        metavar="R",
        help="fraction of items held back until a later step of their card went out "
        "(default 0.05; an order's last item is never held)",
    )
    feed.add_argument(
        "--drop",
        type=_fraction,
        default=0.02,
        metavar="R",
        help="fraction of items recorded in the truth but never sent (default 0.02)",
    )
    feed.add_argument(
        "--batch-max",
        type=_positive_int,
        default=5,
        metavar="K",
        help="most operations in one POST; each batch size is drawn from 1..K (default 5)",
    )
    feed.add_argument(
        "--exception-rate",
        type=_fraction,
        default=0.05,
        metavar="R",
        help="fraction of orders ending in DATA_EXCEPTION (default 0.05)",
    )
    feed.add_argument(
        "--cancel-rate",
        type=_fraction,
        default=0.03,
        metavar="R",
        help="fraction of orders cancelled before shipment (default 0.03)",
    )
    feed.add_argument(
        "--unknown-rate",
        type=_fraction,
        default=0.05,
        metavar="R",
        help="fraction of orders with an unknown CARD_PROD_ON_HOLD step that then resumes "
        "(default 0.05)",
    )
    feed.add_argument(
        "--standalone-rate",
        type=_fraction,
        default=0.05,
        metavar="R",
        help="fraction of STANDALONE_TRACKING (tracking hub) orders (default 0.05)",
    )
    for flag, default, text in FEED_VARIATIONS:
        feed.add_argument(
            flag, type=_fraction, default=default, metavar="R", help=f"{text} (default {default})"
        )
    feed.add_argument(
        "--no-shipment-issuer",
        type=_issuer_id,
        action="append",
        default=[],
        metavar="ID",
        help="this issuer orders without shipment: its orders complete SUCCESSFUL at "
        "CARD_PROD_DONE; repeatable",
    )
    feed.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        metavar="F",
        help="multiplies every stage time (a few seconds per stage at 1; sites and stages "
        "have their own delays) (default 1)",
    )
    feed.add_argument(
        "--register",
        action="store_true",
        help="register each order through the portal's POST /api/v1/orders/ before D1's "
        "first notification about it (needs --register-token)",
    )
    feed.add_argument(
        "--register-token",
        metavar="T",
        help="API token allowed to register orders (Authorization: Token T)",
    )
    feed.add_argument(
        "--concurrency",
        type=_positive_int,
        default=1,
        metavar="C",
        help="POSTs in flight at once (default 1)",
    )
    feed.add_argument(
        "--rate",
        type=float,
        metavar="PER_SECOND",
        help="most notifications sent per second (default: unlimited; the stage times pace "
        "a --continuous feed)",
    )
    feed.add_argument(
        "--continuous",
        action="store_true",
        help="keep starting and advancing orders until interrupted, with wall-clock timestamps",
    )
    feed.add_argument(
        "--in-flight",
        type=_positive_int,
        default=50,
        metavar="N",
        help="orders progressing side by side in a finite run (default 50)",
    )
    feed.add_argument(
        "--epoch",
        type=_timestamp,
        metavar="ISO8601",
        help="simulated start time of a finite run (default: yesterday 00:00 UTC; with "
        "--register, the start of the run)",
    )
    feed.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE_PATH,
        help=f"state store shared with serve and verify (default {DEFAULT_STATE_PATH})",
    )
    feed.add_argument(
        "--client-id", metavar="X", help="OAuth client id for the portal's token endpoint"
    )
    feed.add_argument(
        "--client-secret", metavar="Y", help="OAuth client secret for the portal's token endpoint"
    )
    feed.add_argument(
        "--token-url",
        metavar="URL",
        help="portal token endpoint (default {portal}/authz/d1/v1/oauth2/token)",
    )
    feed.add_argument(
        "--max-retries",
        type=int,
        default=5,
        metavar="N",
        help="retries of a POST answered 5xx/429/401 or not answered at all (default 5)",
    )
    feed.add_argument(
        "--backoff-base",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="first retry delay; doubles each retry, with jitter (default 0.5)",
    )
    feed.add_argument(
        "--backoff-cap",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest retry delay (default 30)",
    )
    feed.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="connect and read timeout of each POST (default 10)",
    )

    verify = commands.add_parser(
        "verify", parents=[common], help="compare the portal's read API with the sandbox's timeline"
    )
    verify.add_argument("--portal", required=True, metavar="URL", help="portal base URL")
    verify.add_argument(
        "--token", required=True, metavar="T", help="read API token (Authorization: Token T)"
    )
    verify.add_argument(
        "--issuer",
        type=_issuer_id,
        action="append",
        metavar="ID",
        help="issuerId to check; repeat for several (default: every issuer in the state store)",
    )
    verify.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE_PATH,
        help=f"state store written by feed (default {DEFAULT_STATE_PATH})",
    )
    verify.add_argument(
        "--seed", type=int, metavar="S", help="with --run: check only that run's orders"
    )
    verify.add_argument(
        "--run", type=_positive_int, metavar="N", help="with --seed: check only that run's orders"
    )
    verify.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="timeout of each read API call (default 30)",
    )
    receiver = commands.add_parser(
        "receiver",
        parents=[common],
        help="receive the portal's card-order events, verify their signatures and print them",
    )
    receiver.add_argument("--host", default=DEFAULT_HOST)
    receiver.add_argument("--port", type=int, default=8091)
    receiver.add_argument(
        "--secret-file",
        type=Path,
        required=True,
        help="file holding the endpoint's signing secret (whsec_...)",
    )
    receiver.add_argument(
        "--log", type=Path, help="append each verified event to this JSON-lines file"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = parser_build()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.command in ("serve", "feed", "receiver"):
        # Process managers (honcho, systemd) stop with SIGTERM: finish as cleanly as on Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
    if args.command == "keys":
        return _keys(args)
    if args.command == "serve":
        if bool(args.tls_cert) != bool(args.tls_key):
            parser.error("--tls-cert and --tls-key go together")
        if args.client_ca and not args.tls_cert:
            parser.error("--client-ca needs --tls-cert and --tls-key")
        return _serve(args)
    if args.command == "feed":
        if bool(args.client_id) != bool(args.client_secret):
            parser.error("--client-id and --client-secret go together")
        if args.register and not args.register_token:
            parser.error("--register needs --register-token")
        return _feed(args)
    if args.command == "receiver":
        from d1sandbox.receiver import receiver_serve

        if not args.secret_file.exists():
            parser.error(f"no secret file {args.secret_file}")
        secret = args.secret_file.read_text().strip()
        return receiver_serve(secret=secret, host=args.host, port=args.port, log=args.log)
    if bool(args.seed is not None) != bool(args.run is not None):
        parser.error("--seed and --run go together")
    return _verify(args)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _keys(args: argparse.Namespace) -> int:
    from d1sandbox.keys import key_pair_ensure, portal_environment_lines

    key_pair = key_pair_ensure(directory=args.directory)
    for line in portal_environment_lines(key_pair=key_pair, api_port=args.api_port, host=args.host):
        print(line)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from d1sandbox.keys import public_keys_load
    from d1sandbox.server import (
        FaultSettings,
        SandboxHTTPServer,
        SandboxService,
        tls_context_build,
    )
    from d1sandbox.state import StateStore

    service = SandboxService(
        public_keys=public_keys_load(directories=[path.resolve() for path in args.keys]),
        store=StateStore(args.state),
        token_ttl=args.token_ttl,
        faults=FaultSettings(
            rate_429=args.rate_429,
            rate_5xx=args.rate_5xx,
            status_5xx=args.status_5xx,
            retry_after=args.retry_after,
            latency_ms=args.latency_ms,
        ),
        answer_shapes={
            **dict.fromkeys(args.list_answer_issuer, "list"),
            **dict.fromkeys(args.bare_answer_issuer, "bare"),
        },
    )
    tls_context = None
    if args.tls_cert:
        tls_context = tls_context_build(
            cert_path=args.tls_cert, key_path=args.tls_key, client_ca_path=args.client_ca
        )
    server = SandboxHTTPServer((args.host, args.port), service=service, tls_context=tls_context)
    host, port = server.server_address[:2]
    # Tests and scripts wait for this line (and read the port from it when --port 0).
    print(f"d1sandbox serve: listening on {server.scheme}://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.store.close()
    return 0


def _feed(args: argparse.Namespace) -> int:
    from d1sandbox.feed import FeedOptions, feed_run

    rate = args.rate
    options = FeedOptions(
        portal_url=args.portal,
        issuer_ids=args.issuer,
        orders=args.orders,
        seed=args.seed,
        run_number=args.run,
        duplicate=args.duplicate,
        reorder=args.reorder,
        drop=args.drop,
        batch_max=args.batch_max,
        exception_rate=args.exception_rate,
        cancel_rate=args.cancel_rate,
        unknown_rate=args.unknown_rate,
        standalone_rate=args.standalone_rate,
        failed_step_rate=args.failed_step_rate,
        no_details_rate=args.no_details_rate,
        hold_completion_rate=args.hold_completion_rate,
        reattempt_rate=args.reattempt_rate,
        prod_exception_rate=args.prod_exception_rate,
        no_shipment_rate=args.no_shipment_rate,
        update_order_rate=args.update_order_rate,
        reissue_rate=args.reissue_rate,
        silent_rate=args.silent_rate,
        late_copy=args.late_copy,
        carrier_exception_rate=args.carrier_exception_rate,
        returned_rate=args.returned_rate,
        expired_rate=args.expired_rate,
        novel_word_rate=args.novel_word_rate,
        changed_copy_rate=args.changed_copy_rate,
        japan_carrier_rate=args.japan_carrier_rate,
        offset_time_rate=args.offset_time_rate,
        zoneless_time_rate=args.zoneless_time_rate,
        numeric_id_rate=args.numeric_id_rate,
        pair=args.pair,
        no_shipment_issuers=args.no_shipment_issuer,
        time_scale=args.time_scale,
        register=args.register,
        register_token=args.register_token,
        concurrency=args.concurrency,
        rate=rate,
        continuous=args.continuous,
        in_flight=args.in_flight,
        epoch=args.epoch,
        state_path=args.state,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_url=args.token_url,
        max_retries=args.max_retries,
        backoff_base=args.backoff_base,
        backoff_cap=args.backoff_cap,
        timeout=args.timeout,
    )
    summary = feed_run(options=options, out=lambda line: print(line, flush=True))
    # A finite run that could not deliver what it meant to is worth a non-zero exit in scripts.
    undelivered = summary.failed_posts + summary.refused_posts
    unregistered = summary.registration_refused + summary.registration_failed
    return 0 if args.continuous or (undelivered == 0 and unregistered == 0) else 1


def _verify(args: argparse.Namespace) -> int:
    import requests

    from d1sandbox.state import StateStore
    from d1sandbox.verify import verify_run

    run_id = None
    if args.seed is not None:
        store = StateStore(args.state)
        run_id = store.run_lookup(seed=args.seed, run_number=args.run)
        store.close()
        if run_id is None:
            print(f"no run {args.run} of seed {args.seed} in {args.state}", file=sys.stderr)
            return 2
    try:
        report = verify_run(
            portal_url=args.portal,
            token=args.token,
            issuer_ids=args.issuer,
            state_path=args.state,
            run_id=run_id,
            timeout=args.timeout,
        )
    except requests.RequestException as exc:
        print(f"the portal's read API failed: {exc}", file=sys.stderr)
        return 2
    return 0 if report.ok else 1
