"""Kombu's filesystem transport (the embedded broker) with messages written atomically.

The stock transport creates the message file and then writes into it, while a consumer may
already be moving and reading it: the consumer then reads an empty file and the worker stops
with a JSONDecodeError. That happens as soon as a worker publishes tasks (the reconcile sweep)
while it consumes. Here each message is written under a name no consumer looks at and renamed
into place, which is atomic on one filesystem.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

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
