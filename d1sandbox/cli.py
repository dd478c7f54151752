"""Command line of the sandbox: keys, serve, feed, verify and receiver (`--help`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from d1sandbox.arguments import (
    FEED_VARIATIONS,
    fraction_argument,
    issuer_id_argument,
    positive_float_argument,
    positive_int_argument,
    timestamp_argument,
)
from d1sandbox.commands import (
    feed_command,
    interrupt,
    keys_command,
    serve_command,
    verify_command,
)
from d1sandbox.state import DEFAULT_STATE_PATH

DEFAULT_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8090


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
        type=positive_int_argument,
        default=900,
        metavar="SECONDS",
        help="lifetime of the access tokens handed out (default 900, as D1)",
    )
    serve.add_argument(
        "--rate-429",
        type=fraction_argument,
        default=0.0,
        metavar="R",
        help="fraction of productionStatus calls answered 429 with Retry-After (default 0)",
    )
    serve.add_argument(
        "--rate-5xx",
        type=fraction_argument,
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
        type=issuer_id_argument,
        action="append",
        default=[],
        metavar="ID",
        help="answer this issuer's productionStatus with the bare operation object instead of "
        '{"operations": [...]}; repeatable',
    )
    serve.add_argument(
        "--list-answer-issuer",
        type=issuer_id_argument,
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
        type=issuer_id_argument,
        action="append",
        required=True,
        metavar="ID",
        help="issuerId to feed (10 characters); repeat for several issuers",
    )
    feed.add_argument(
        "--orders",
        type=positive_int_argument,
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
        type=positive_int_argument,
        metavar="N",
        help="run number used in the ids (default: one more than the last run of this seed "
        "in the state store)",
    )
    feed.add_argument(
        "--duplicate",
        type=fraction_argument,
        default=0.05,
        metavar="R",
        help="fraction of items sent twice, in the same batch or later (default 0.05)",
    )
    feed.add_argument(
        "--reorder",
        type=fraction_argument,
        default=0.05,
        metavar="R",
        help="fraction of items held back until a later step of their card went out "
        "(default 0.05; an order's last item is never held)",
    )
    feed.add_argument(
        "--drop",
        type=fraction_argument,
        default=0.02,
        metavar="R",
        help="fraction of items recorded in the truth but never sent (default 0.02)",
    )
    feed.add_argument(
        "--batch-max",
        type=positive_int_argument,
        default=5,
        metavar="K",
        help="most operations in one POST; each batch size is drawn from 1..K (default 5)",
    )
    feed.add_argument(
        "--exception-rate",
        type=fraction_argument,
        default=0.05,
        metavar="R",
        help="fraction of orders ending in DATA_EXCEPTION (default 0.05)",
    )
    feed.add_argument(
        "--cancel-rate",
        type=fraction_argument,
        default=0.03,
        metavar="R",
        help="fraction of orders cancelled before shipment (default 0.03)",
    )
    feed.add_argument(
        "--unknown-rate",
        type=fraction_argument,
        default=0.05,
        metavar="R",
        help="fraction of orders with an unknown CARD_PROD_ON_HOLD step that then resumes "
        "(default 0.05)",
    )
    feed.add_argument(
        "--standalone-rate",
        type=fraction_argument,
        default=0.05,
        metavar="R",
        help="fraction of STANDALONE_TRACKING (tracking hub) orders (default 0.05)",
    )
    for flag, default, text in FEED_VARIATIONS:
        feed.add_argument(
            flag,
            type=fraction_argument,
            default=default,
            metavar="R",
            help=f"{text} (default {default})",
        )
    feed.add_argument(
        "--no-shipment-issuer",
        type=issuer_id_argument,
        action="append",
        default=[],
        metavar="ID",
        help="this issuer orders without shipment: its orders complete SUCCESSFUL at "
        "CARD_PROD_DONE; repeatable",
    )
    feed.add_argument(
        "--time-scale",
        type=positive_float_argument,
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
        type=positive_int_argument,
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
        type=positive_int_argument,
        default=50,
        metavar="N",
        help="orders progressing side by side in a finite run (default 50)",
    )
    feed.add_argument(
        "--epoch",
        type=timestamp_argument,
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
        type=issuer_id_argument,
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
        "--run",
        type=positive_int_argument,
        metavar="N",
        help="with --seed: check only that run's orders",
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
        signal.signal(signal.SIGTERM, interrupt)
    if args.command == "keys":
        return keys_command(args)
    if args.command == "serve":
        if bool(args.tls_cert) != bool(args.tls_key):
            parser.error("--tls-cert and --tls-key go together")
        if args.client_ca and not args.tls_cert:
            parser.error("--client-ca needs --tls-cert and --tls-key")
        return serve_command(args)
    if args.command == "feed":
        if bool(args.client_id) != bool(args.client_secret):
            parser.error("--client-id and --client-secret go together")
        if args.register and not args.register_token:
            parser.error("--register needs --register-token")
        return feed_command(args)
    if args.command == "receiver":
        from d1sandbox.receiver import receiver_serve

        if not args.secret_file.exists():
            parser.error(f"no secret file {args.secret_file}")
        secret = args.secret_file.read_text().strip()
        return receiver_serve(secret=secret, host=args.host, port=args.port, log=args.log)
    if bool(args.seed is not None) != bool(args.run is not None):
        parser.error("--seed and --run go together")
    return verify_command(args)
