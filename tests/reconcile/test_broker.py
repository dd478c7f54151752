"""The embedded broker: a worker that publishes while it consumes never reads a half-written task.

With kombu's stock filesystem transport this test fails now and then (the consumer moves a file
that a publisher has created but not yet written, and stops on a JSONDecodeError).
"""

from __future__ import annotations

import threading

from kombu import Connection

from config.broker import AtomicFilesystemTransport

PUBLISHERS = 4
MESSAGES_EACH = 200


def test_messages_published_during_consumption_all_arrive_whole(tmp_path):
    (tmp_path / "processed").mkdir()
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "processed_folder": str(tmp_path / "processed"),
        "control_folder": str(tmp_path / "control"),
        "polling_interval": 0,  # the consumer looks as often as it can: the race at its widest
    }

    def publish(publisher: int) -> None:
        with Connection(transport=AtomicFilesystemTransport, transport_options=options) as conn:
            queue = conn.SimpleQueue("tasks")
            for n in range(MESSAGES_EACH):
                queue.put({"publisher": publisher, "n": n})

    received = []
    with Connection(transport=AtomicFilesystemTransport, transport_options=options) as conn:
        queue = conn.SimpleQueue("tasks")
        publishers = [threading.Thread(target=publish, args=(p,)) for p in range(PUBLISHERS)]
        for thread in publishers:
            thread.start()
        try:
            while len(received) < PUBLISHERS * MESSAGES_EACH:
                message = queue.get(timeout=10)
                received.append((message.payload["publisher"], message.payload["n"]))
                message.ack()
        finally:
            for thread in publishers:
                thread.join()

    assert sorted(received) == [(p, n) for p in range(PUBLISHERS) for n in range(MESSAGES_EACH)]
    assert not list(tmp_path.glob("*.tmp"))
