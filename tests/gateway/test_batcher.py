"""Natural batching with real threads: the first item goes alone, what waits goes together."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from paykit.gateway.batcher import Batcher

WAIT_S = 5.0


class Peer:
    """A peer that holds each batch until the test lets it go, and records every batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.arrived = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.fail = False

    def send(self, items):
        self.batches.append(list(items))
        self.arrived.release()
        assert self.go.acquire(timeout=WAIT_S)
        if self.fail:
            raise ConnectionError("the peer went away")
        return [item * 10 for item in items]


@pytest.fixture
def pool():
    with ThreadPoolExecutor(2) as executor:
        yield executor


def test_items_that_wait_while_a_batch_is_in_flight_go_together(pool):
    peer = Peer()
    batcher = Batcher(peer.send, lambda item, exc: -item, pool, max_items=3)
    first = batcher.submit(1)
    assert peer.arrived.acquire(timeout=WAIT_S)  # sent at once: a lone item waits for nothing
    waiting = [batcher.submit(n) for n in (2, 3, 4, 5)]  # arrive while batch 1 is in flight
    peer.go.release()
    assert first.result(WAIT_S) == 10
    assert peer.arrived.acquire(timeout=WAIT_S)
    peer.go.release()
    assert peer.arrived.acquire(timeout=WAIT_S)
    peer.go.release()
    assert [f.result(WAIT_S) for f in waiting] == [20, 30, 40, 50]  # each its own result, in order
    assert peer.batches == [[1], [2, 3, 4], [5]]  # at most max_items per batch


def test_a_failed_batch_fails_each_of_its_items_and_the_next_batch_still_goes(pool):
    peer = Peer()
    batcher = Batcher(peer.send, lambda item, exc: f"{item} failed: {exc}", pool, max_items=10)
    peer.fail = True
    doomed = batcher.submit(7)
    assert peer.arrived.acquire(timeout=WAIT_S)
    peer.go.release()
    assert doomed.result(WAIT_S) == "7 failed: the peer went away"
    peer.fail = False
    later = batcher.submit(8)
    assert peer.arrived.acquire(timeout=WAIT_S)
    peer.go.release()
    assert later.result(WAIT_S) == 80


def test_many_threads_submitting_at_once_each_get_their_own_result(pool):
    batcher = Batcher(lambda items: [i + 1 for i in items], lambda i, e: None, pool, max_items=8)
    results: dict[int, int] = {}
    start = threading.Barrier(16)

    def submit(n: int) -> None:
        start.wait()
        results[n] = batcher.submit(n).result(WAIT_S)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert results == {n: n + 1 for n in range(16)}


def test_an_inline_submit_sends_on_the_callers_thread_when_nothing_is_in_flight(pool):
    senders: list[str] = []

    def send(items):
        senders.append(threading.current_thread().name)
        return items

    batcher = Batcher(send, lambda i, e: None, pool, max_items=4)
    assert batcher.submit(1, inline=True).result(WAIT_S) == 1  # done before submit returned
    assert senders == [threading.current_thread().name]
    assert batcher.submit(2).result(WAIT_S) == 2 and senders[1] != senders[0]  # the pool's thread
