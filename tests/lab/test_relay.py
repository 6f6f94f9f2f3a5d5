"""The fault relay: bytes through unchanged, each fault as documented, and a clean close.

The first tests put a Relays in front of a small TCP echo server (this file's EchoServer); the
last ones use a real cluster, whose every link runs through relays, to show that mutual TLS
passes through and every identity is still checked.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time

import grpc
import pandas as pd
import pytest

from paykit.cli import build_parser
from paykit.core.errors import InvalidInput, NotAuthenticated, TLSFailure, Unavailable
from paykit.lab import LocalCluster, Relays
from paykit.lab.relay import REPLIES, REQUESTS
from paykit.rpc.channels import secure_channel
from paykit.rpc.pki import CLIENT_CN, GATEWAY_CN, bank_cn, ensure_identity, init_pki
from paykit.rpc.status import from_rpc_error
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

CLUSTER = {"prepare_timeout_s": 1.0}
WAIT_S = 3.0


class EchoServer:
    """Sends back what it receives; remembers what it received and how many connections came."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = bytearray()
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                with self.lock:
                    self.received += data
                conn.sendall(data)
        except OSError:  # reset by the relay: the test's point
            pass
        finally:
            conn.close()

    def wait_conns_closed(self) -> bool:
        """True once every accepted connection's echo thread has closed it (they close on their own
        thread after the peer goes, so a count of open descriptors must wait for them)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                if all(conn.fileno() == -1 for conn in self.conns):
                    return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept above
        self.listener.close()
        self.thread.join(WAIT_S)
        with self.lock:
            for conn in self.conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def relays():
    r = Relays(seed=1)
    yield r
    r.close()


def add_link(relays: Relays, target: str):
    return relays.add("a->b", caller="a", server="b", service="Echo", target=lambda: target)


def dial(link, timeout_s: float = WAIT_S) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", link.port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise EOFError(f"closed after {len(got)} of {n} bytes")
        got += chunk
    return bytes(got)


def echo_round(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return recv_exactly(sock, len(data))


def test_bytes_pass_through_unchanged_both_ways_and_are_counted(relays, echo):
    link = add_link(relays, echo.address)
    payload = random.Random(3).randbytes(1 << 20)  # 1 MiB: many reads, partial writes
    with dial(link) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join()
        (state,) = relays.states()
        assert (state.state, state.connections) == ("ok", 1)
    assert (state.request_bytes, state.reply_bytes, state.dropped_bytes) == (1 << 20, 1 << 20, 0)


def test_a_cut_resets_connections_refuses_new_ones_and_heals_on_the_same_port(relays, echo):
    link = add_link(relays, echo.address)
    with dial(link) as closed_by_server:
        assert echo_round(closed_by_server, b"bye") == b"bye"
        with echo.lock:
            echo.conns[-1].shutdown(socket.SHUT_WR)  # the server closes first (as a killed one)
        assert closed_by_server.recv(10) == b""  # so the relay's socket, on the link's port,
    # closes first too: it waits in TIME_WAIT, holding that port.
    sock = dial(link)
    assert echo_round(sock, b"ping") == b"ping"
    (state,) = relays.cut([link])
    assert (state.state, state.connections) == ("cut", 0)
    with pytest.raises(ConnectionResetError):  # reset, not an orderly close: "the network"
        sock.recv(10)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        dial(link)
    relays.heal([link])  # listening again on the same port, despite the sockets it left
    with dial(link) as again:
        assert echo_round(again, b"back") == b"back"


def test_dropped_replies_reach_the_server_never_the_caller_and_heal_resets(relays, echo):
    link = add_link(relays, echo.address)
    sock = dial(link, timeout_s=0.3)
    assert echo_round(sock, b"one") == b"one"
    relays.drop([link], REPLIES)
    sock.sendall(b"two")
    with pytest.raises(TimeoutError):
        sock.recv(10)
    assert bytes(echo.received).endswith(b"two")  # the request was served...
    (state,) = relays.states()
    assert (state.state, state.dropped_bytes) == ("replies dropped", 3)  # ...its answer lost
    relays.heal()
    # The stream lost bytes, so it can never be whole again: healing resets it.
    with pytest.raises(ConnectionResetError):
        sock.settimeout(WAIT_S)
        sock.recv(10)
    sock.close()
    with dial(link) as fresh:
        assert echo_round(fresh, b"three") == b"three"


def test_a_blackhole_accepts_and_forwards_nothing(relays, echo):
    link = add_link(relays, echo.address)
    relays.drop([link])  # both ways
    sock = dial(link, timeout_s=0.3)  # the connection is accepted...
    sock.sendall(b"hello?")
    with pytest.raises(TimeoutError):
        sock.recv(10)
    assert echo.accepted == 0  # ...and the server never saw it
    relays.heal()
    with pytest.raises(ConnectionResetError):
        sock.settimeout(WAIT_S)
        sock.recv(10)
    sock.close()


def test_a_delay_holds_bytes_in_order_within_its_jitter(relays, echo):
    link = add_link(relays, echo.address)
    relays.delay([link], ms=100, jitter_ms=40, direction=REQUESTS)
    (state,) = relays.states()
    assert (state.requests, state.replies) == ("delay 100±40 ms", "pass")
    with dial(link) as sock:
        started = time.monotonic()
        for i in range(20):  # sent at once, each chunk with its own random delay
            sock.sendall(b"%03d" % i)
        got = recv_exactly(sock, 60)
        took_ms = (time.monotonic() - started) * 1000
        one_ms = []
        for _ in range(5):
            t0 = time.monotonic()
            echo_round(sock, b"x")
            one_ms.append((time.monotonic() - t0) * 1000)
    assert got == b"".join(b"%03d" % i for i in range(20))  # TCP's order, kept
    assert 60 <= took_ms < 1000
    assert all(60 <= ms < 1000 for ms in one_ms), one_ms  # 100 ± 40 ms, plus the machine


def test_a_server_that_is_down_resets_the_caller_instead_of_closing_in_order(relays):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{probe.getsockname()[1]}"
    link = add_link(relays, nobody)

    def hello() -> bytes:
        with dial(link) as sock:
            sock.sendall(b"client hello")
            return sock.recv(10)

    # A reset, as if refused (the connect itself may see it first), never an orderly close:
    # a client counts those during the TLS handshake as a server refusing its certificate.
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        hello()


def test_an_orderly_close_by_the_server_reaches_the_caller_as_one(relays, echo):
    link = add_link(relays, echo.address)
    with dial(link) as sock:
        assert echo_round(sock, b"hi") == b"hi"
        with echo.lock:
            server_side = echo.conns[-1]
        server_side.shutdown(socket.SHUT_WR)  # FIN from the server
        assert sock.recv(10) == b""


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_wakes_a_blocked_reader_and_leaves_no_thread_or_socket(echo):
    fds = open_fds()
    relays = Relays()
    link = add_link(relays, echo.address)
    sock = dial(link, timeout_s=None)
    assert echo_round(sock, b"ready") == b"ready"
    woken: list[BaseException | bytes] = []

    def reader() -> None:
        try:
            woken.append(sock.recv(10))  # blocks: nobody sends anything
        except OSError as exc:
            woken.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.1)
    relays.close()
    thread.join(WAIT_S)
    assert not thread.is_alive() and isinstance(woken[0], ConnectionResetError)
    sock.close()
    assert not [t for t in threading.enumerate() if t.name == "paykit-relays"]
    assert echo.wait_conns_closed()  # the echo server's side, closed by its own thread
    assert open_fds() == fds  # listener, connections, the loop's selector: all closed
    with pytest.raises(Unavailable, match="closed"):
        relays.states()
    relays.close()  # twice is fine


def test_control_from_many_threads_while_bytes_flow_keeps_the_stream_whole(relays, echo):
    link = add_link(relays, echo.address)
    stop = threading.Event()
    errors: list[BaseException] = []

    def teacher(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                rng.choice(
                    [
                        lambda: relays.delay([link], ms=rng.randint(1, 5)),
                        lambda: relays.delay([link], ms=2, direction=REPLIES),
                        relays.heal,
                        relays.states,
                    ]
                )()
        except BaseException as exc:
            errors.append(exc)

    teachers = [threading.Thread(target=teacher, args=(i,)) for i in range(6)]
    for t in teachers:
        t.start()
    expected = bytearray()
    with dial(link) as sock:
        for i in range(200):  # never dropped, only delayed: every byte arrives, in order
            chunk = b"%05d|" % i
            expected += chunk
            assert echo_round(sock, chunk) == chunk
    stop.set()
    for t in teachers:
        t.join(WAIT_S)
    assert not errors
    assert bytes(echo.received) == bytes(expected)


def test_bad_fault_arguments_are_refused_and_change_nothing(relays, echo):
    link = add_link(relays, echo.address)
    for bad, match in (
        (dict(ms=-1), "more than 0"),
        (dict(ms=0), "more than 0"),
        (dict(ms="fast"), "number of milliseconds"),
        (dict(ms=True), "number of milliseconds"),
        (dict(ms=float("nan")), "number of milliseconds"),
        (dict(ms=10**9), "at most 60000"),
        (dict(ms=10, jitter_ms=20), "must not be more than ms"),
        (dict(ms=10, direction="sideways" * 100), "is not one of"),
    ):
        with pytest.raises(InvalidInput, match=match) as refused:
            relays.delay([link], **bad)
        assert len(str(refused.value)) < 200  # a short prefix of what it was given, at most
    with pytest.raises(InvalidInput, match="is not one of"):
        relays.drop([link], "up")
    with pytest.raises(InvalidInput, match="already"):
        add_link(relays, echo.address)
    assert relays.states()[0].state == "ok"


# -- a real cluster: every link through a relay -------------------------------------


def test_mutual_tls_passes_through_and_every_identity_is_still_checked(shared_cluster, tmp_path):
    c = shared_cluster
    relay_to_bank = c._relays.links["gateway->BankA"].address
    # The client's certificate, through the client->gateway relay: served (and refused by the
    # gateway itself: nobody has no account).
    with c.session() as session, pytest.raises(NotAuthenticated):
        session.authenticate("nobody", "password123")
    # A certificate from another CA, through the same relay: the gateway refuses the handshake.
    stranger = tmp_path / "stranger-pki"
    init_pki(stranger, ["BankA"])
    with secure_channel(c.gateway_address, ensure_identity(stranger, CLIENT_CN)) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.GatewayStub(channel).Authenticate(pb.AuthenticateRequest(), timeout=5)
    assert isinstance(from_rpc_error(refused.value), TLSFailure | Unavailable)
    # A client certificate dialing the gateway's relay to BankA: BankA still sees who it is.
    client_tls = ensure_identity(c.pki_dir, CLIENT_CN)
    with secure_channel(relay_to_bank, client_tls, server_name=bank_cn("BankA")) as channel:
        with pytest.raises(grpc.RpcError) as denied:
            pb_grpc.BankStub(channel).GetBalance(pb.GetBalanceRequest(account_id="x"), timeout=5)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # And the bank's certificate is checked too: BankB's relay cannot pass for BankA.
    gateway_tls = ensure_identity(c.pki_dir, GATEWAY_CN)
    relay_to_b = c._relays.links["gateway->BankB"].address
    with secure_channel(relay_to_b, gateway_tls, server_name=bank_cn("BankA")) as channel:
        with pytest.raises(grpc.RpcError) as wrong:
            pb_grpc.BankStub(channel).GetBalance(pb.GetBalanceRequest(account_id="x"), timeout=5)
    assert wrong.value.code() == grpc.StatusCode.UNAVAILABLE


def test_links_table_names_every_link_and_its_state(shared_cluster):
    c = shared_cluster
    table = pd.DataFrame(c.links())
    assert list(table.link) == [
        "client->gateway",
        "gateway->BankA",
        "BankA->gateway",
        "gateway->BankB",
        "BankB->gateway",
    ]
    assert list(table.service) == ["Gateway", "Bank", "Coordinator", "Bank", "Coordinator"]
    assert set(table.state) == {"ok"}
    # Every link forwards to its server's own port; clients dial the relay.
    gateway = f"127.0.0.1:{c.procs['gateway'].port}"
    assert set(table[table.server == "gateway"].target) == {gateway}
    assert c.gateway_address == table.address[0] != gateway
    try:
        states = c.delay("gateway", "BankA", ms=50, jitter_ms=10, direction="replies")
        assert [repr(s).split(",")[0] for s in states] == [
            "<link gateway->BankA: replies delay 50±10 ms",
            "<link BankA->gateway: replies delay 50±10 ms",
        ]
        assert "faults on gateway->BankA, BankA->gateway" in repr(c)
    finally:
        c.heal()
    assert "faults on none" in repr(c)


def test_each_bank_asks_the_coordinator_through_its_own_link(shared_cluster):
    c = shared_cluster
    for bank in c.bank_names:
        command = c._command(c.procs[bank])
        given = command[command.index("--coordinator") + 1]
        assert given == c._relays.links[f"{bank}->gateway"].address


def test_bank_coordinator_option_takes_host_port_only(capsys):
    args = build_parser().parse_args(["bank", "--name", "BankA", "--coordinator", "[::1]:50050"])
    assert args.coordinator == "[::1]:50050"
    for bad in ("127.0.0.1", "127.0.0.1:http", ":50050", "127.0.0.1:70000"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bank", "--name", "BankA", "--coordinator", bad])
        assert "is not HOST:PORT" in capsys.readouterr().err


def test_a_cluster_without_relays_says_so_and_a_stopped_one_leaves_nothing(tmp_path):
    plain = LocalCluster(relays=False, data_dir=tmp_path / "plain")
    assert plain.links() == []
    with pytest.raises(InvalidInput, match="relays=True"):
        plain.partition("gateway", "BankB")
    threads = set(threading.enumerate())
    cluster = LocalCluster(data_dir=tmp_path / "c", prepare_timeout_s=1.0).start()
    address = cluster.gateway_address
    cluster.stop()
    cluster.start()  # the links come back on the same addresses
    assert cluster.gateway_address == address
    cluster.stop()
    assert not [t for t in set(threading.enumerate()) - threads if t.name == "paykit-relays"]
    host, port = address.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=WAIT_S).close()
    with pytest.raises(Unavailable, match="not running"):
        cluster.heal()


def test_bench_compares_relays_off_and_on_in_one_run(capsys):
    from paykit.lab import bench

    def variants(*argv):
        return bench.variants_of(bench.build_parser().parse_args(list(argv)))

    assert variants() == {"": {"batching": True, "relays": False}}  # as `paykit up` runs
    assert variants("--relays", "both") == {
        "relays off": {"batching": True, "relays": False},
        "relays on": {"batching": True, "relays": True},
    }
    assert bench.main(["--relays", "both", "--batching", "both"]) == 2
    assert "one thing at a time" in capsys.readouterr().err


def test_a_caller_giving_up_on_a_blackholed_connection_is_let_go(relays, echo):
    link = add_link(relays, echo.address)
    relays.drop([link], REQUESTS)
    with dial(link) as sock:
        sock.sendall(b"anyone?")
        wait_s = time.monotonic() + WAIT_S
        while relays.states()[0].connections != 1 and time.monotonic() < wait_s:
            time.sleep(0.01)
    # The caller closed it: the relay does not keep the dead end open until the heal.
    while relays.states()[0].connections and time.monotonic() < wait_s:
        time.sleep(0.01)
    assert relays.states()[0].connections == 0


def test_a_server_whose_port_was_taken_while_it_was_down_restarts_behind_its_relay(make_cluster):
    # A killed server's port is free for any process; with relays the cluster starts it on a new
    # port when its old one is taken, and callers, who dial the relay, notice nothing.
    cluster = make_cluster()
    ada = cluster.client()
    ada.register("ada", "password123", "ada-acct", "100", "BankA")
    ada.authenticate("ada", "password123")
    old_port = cluster.procs["BankB"].port
    cluster.kill("BankB")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", old_port))
    squatter.listen()
    try:
        cluster.restart("BankB")
        assert cluster.procs["BankB"].port not in (0, old_port)
        assert ada.pay("BankB", "recipient123", "5").succeeded
    finally:
        squatter.close()
        ada.close()
