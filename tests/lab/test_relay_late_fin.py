"""A delayed FIN for a caller that reset its connection meanwhile (seen in lesson 9: the gateway
restarted while its delayed link to a bank still held the bank's FIN). The relay stops reading a
caller's socket once the caller's own FIN arrived, so it does not see the reset; writing the
FIN then fails (ENOTCONN), and that must close the connection quietly, not raise in the
relays' event loop."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import pytest

from paykit.lab import Relays
from paykit.lab.relay import REPLIES

WAIT_S = 3.0
DELAY_MS = 300


@pytest.fixture
def closing_server():
    """Accepts one connection, waits for the caller's FIN, and closes in order (its FIN)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(1024):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    thread.join(WAIT_S)
    listener.close()


def test_a_delayed_fin_to_a_caller_that_reset_meanwhile_closes_quietly(closing_server, caplog):
    relays = Relays(seed=1)
    try:
        link = relays.add("a->b", caller="a", server="b", service="Echo",
                          target=lambda: closing_server)  # fmt: skip
        relays.delay([link], ms=DELAY_MS, direction=REPLIES)
        caller = socket.create_connection(("127.0.0.1", link.port), timeout=WAIT_S)
        caller.shutdown(socket.SHUT_WR)  # the caller's FIN: the relay stops reading it
        time.sleep(DELAY_MS / 3000)  # the server's FIN is now held in the delayed replies
        caller.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        caller.close()  # a reset the relay does not read
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            time.sleep(DELAY_MS * 2 / 1000)  # the held FIN is due: written to a reset socket
            states = relays.states()
        assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
        assert states[0].connections == 0  # closed, not left half open
    finally:
        relays.close()
