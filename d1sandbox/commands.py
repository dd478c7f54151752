"""What each command of the sandbox does, given its parsed arguments (`d1sandbox.cli`)."""

from __future__ import annotations

import argparse
import sys


def interrupt(signum: int, frame: object) -> None:
    """On SIGTERM: stop as cleanly as on Ctrl-C."""
    raise KeyboardInterrupt


def keys_command(args: argparse.Namespace) -> int:
    from d1sandbox.keys import key_pair_ensure, portal_environment_lines

    key_pair = key_pair_ensure(directory=args.directory)
    for line in portal_environment_lines(key_pair=key_pair, api_port=args.api_port, host=args.host):
        print(line)
    return 0


def serve_command(args: argparse.Namespace) -> int:
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


def feed_command(args: argparse.Namespace) -> int:
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


def verify_command(args: argparse.Namespace) -> int:
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
