"""The broker's two repairs: an embedded broker that writes atomically, and a worker that
survives losing Redis.

Kombu's filesystem transport (the embedded broker) with messages written atomically:

The stock transport creates the message file and then writes into it, while a consumer may
already be moving and reading it: the consumer then reads an empty file and the worker stops
with a JSONDecodeError. That happens as soon as a worker publishes tasks (the reconcile sweep)
while it consumes. Here each message is written under a name no consumer looks at and renamed
into place, which is atomic on one filesystem.

`BrokerLossConsumer`: when the Redis broker went away while a task was in flight, Celery 5.7
closes the connection it has just collected, and kombu's Redis channel then fails to restore
the unacknowledged messages with `AttributeError: 'NoneType' object has no attribute
'hostname'`, an "unrecoverable error" that ends the worker (the Redis-stopped drill of
tests/observability/test_drills.py). The consumer here lets that one failure pass and
reconnects as it
would after any other connection loss. The messages it could not restore come back after the
broker's visibility timeout, and the sweep reclaims their orders once their claim expires.
"""

from __future__ import annotations

import logging
import os
import uuid
from time import monotonic

from celery.worker.consumer import Consumer
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class AtomicFilesystemChannel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        # Same name as the stock transport (time first, so consumers keep the order).
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final_path = os.path.join(self.data_folder_out, name)
        # "partial-<uuid>.tmp" never matches "<queue>.msg", so consumers skip it.
        partial_path = os.path.join(self.data_folder_out, f"partial-{uuid.uuid4()}.tmp")
        try:
            with open(partial_path, "wb", buffering=0) as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial_path, final_path)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final_path!r} to directory") from exc


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicFilesystemChannel


logger = logging.getLogger(__name__)


class BrokerLossConsumer(Consumer):
    """Celery's consumer, surviving the close of a Redis connection that is already gone."""

    def on_connection_error_after_connected(self, exc):
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError:
            logger.warning(
                "broker connection lost with tasks in flight; they return after the visibility "
                "timeout",
                exc_info=True,
            )
            self.connection = None
