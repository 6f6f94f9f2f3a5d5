"""ChannelWatch: the gRPC channel's own connectivity, as the drainer needs it (its `Link`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

NUDGE_SETTLE_S = 0.3  # a little over grpc's connectivity poll period (0.2 s)


def _ignore(_state: grpc.ChannelConnectivity) -> None:
    """A subscriber that exists only to ask the channel to connect."""


class ChannelWatch:
    """The channel's own connectivity (grpc.Channel.subscribe), for the outbox's drainer.

    Counts transitions into READY, so "reconnected" is a change of `generation()`; an
    idle channel (the gateway closed it) does not reconnect by itself, hence `nudge()`.
    """

    def __init__(self, channel: grpc.Channel, on_change: Callable[[], None]) -> None:
        self._channel = channel
        self._on_change = on_change
        self._cond = threading.Condition()
        self._state: grpc.ChannelConnectivity | None = None
        self._generation = 0
        self._last_nudge = time.monotonic()  # subscribing below nudges too
        channel.subscribe(self._changed, try_to_connect=True)

    def _changed(self, state: grpc.ChannelConnectivity) -> None:
        with self._cond:
            if (
                state is grpc.ChannelConnectivity.READY
                and self._state is not grpc.ChannelConnectivity.READY
            ):
                self._generation += 1
            self._state = state
            self._cond.notify_all()
        self._on_change()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def is_ready(self) -> bool:
        return self._state is grpc.ChannelConnectivity.READY

    def nudge(self) -> None:
        self._last_nudge = time.monotonic()
        self._channel.subscribe(_ignore, try_to_connect=True)
        self._channel.unsubscribe(_ignore)

    def wait_settled(self, timeout_s: float) -> bool:
        """Waits until the channel is READY or a connection attempt has failed; True if READY."""
        if not self.is_ready():
            self.nudge()
        settled = (grpc.ChannelConnectivity.READY, grpc.ChannelConnectivity.TRANSIENT_FAILURE)
        with self._cond:
            self._cond.wait_for(lambda: self._state in settled, timeout_s)
        return self.is_ready()

    def close(self) -> None:
        """Unsubscribes. Call before closing the channel."""
        self._channel.unsubscribe(self._changed)
        # grpc's poller acts on a nudge within its 0.2 s poll; closing the channel before
        # then makes that thread fail ("Channel closed!"), so let a recent nudge land first.
        time.sleep(max(0.0, self._last_nudge + NUDGE_SETTLE_S - time.monotonic()))
