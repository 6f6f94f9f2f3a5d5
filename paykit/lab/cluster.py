"""LocalCluster: start, stop, kill -9, restart, pause and resume a whole paykit on one machine.

Controls (used by tests, the demo and the lessons):
    start()               banks first, then the gateway; each waits until it reports ready
    stop()                SIGTERM everything (resumes paused servers first), SIGKILL stragglers
    kill(name)            SIGKILL, like a power cut: no clean-up runs
    restart(name)         start a stopped or killed server again, on the same port and data
    pause(name)/resume()  SIGSTOP / SIGCONT: a server that hangs without dying
    arm(name, failpoint)  crash or pause that server at a named point on the 2PC path
                          (or, with action "error", fail its write there as a bad disk would)
    disarm(name)          take back every failpoint of that server that has not fired
Network (a fault relay on every link, see paykit.lab.relay and docs/network.md):
    links()               one row per link: client->gateway, gateway->BankX, BankX->gateway
    partition(a, b)       nothing passes between a and b (drop="replies": answers are lost)
    cut(a, b)             connections reset, new ones refused
    delay(a, b, ms=200)   every byte waits (jitter_ms= for a spread)
    heal() / heal(a, b)   everything passes again
LocalCluster(relays=False) has no relays (the servers dial each other directly).
LocalCluster(participant="module:Class") runs each bank with that 2PC participant (a lab's
student code, see paykit.bank.participant); its module's folder goes on the banks' PYTHONPATH.
Each server runs in its own session with its stdin a pipe from this process, so when
this process dies (a notebook kernel is killed with SIGKILL) every server exits too.

A cluster that made its own temporary folder (no data_dir=) removes it on stop(), so a stopped
cluster started again starts empty; LocalCluster(keep=True) keeps it (the caller says where).
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from paykit import packaged
from paykit.client.api import PaymentClient
from paykit.client.operator import OperatorClient
from paykit.client.session import GatewaySession
from paykit.core import failpoints as fp
from paykit.core.config import PREPARE_TIMEOUT_S
from paykit.core.errors import InvalidInput, Unavailable
from paykit.lab.relay import BOTH, LinkState, Relays
from paykit.rpc.pki import (
    CLIENT_CN,
    GATEWAY_CN,
    OPERATOR_CN,
    bank_cn,
    ensure_identity,
    init_pki,
    role_folder,
)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
GATEWAY = "gateway"
CLIENT = "client"  # the callers of cluster.client() and cluster.session(), on the links
CLIENT_LOG_DIR = "clients"  # under the data folder: one rpc.client log per cluster.client()
# shared by all clusters of this process, so no two clients share a file
_client_numbers = itertools.count(1)
DEFAULT_SEED_CSV = packaged.seed_csv()  # package data, so an installed wheel has it too
_live: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


@dataclass
class Proc:
    name: str
    port: int
    data_dir: Path
    popen: subprocess.Popen | None = None
    paused: bool = False
    err_from: int = 0  # where this start's lines begin in <name>.stderr (earlier runs' before)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class LocalCluster:
    """Banks and a gateway on 127.0.0.1, each a real process with real TLS and SQLite."""

    def __init__(
        self,
        banks: tuple[str, ...] = ("BankA", "BankB"),
        *,
        data_dir: Path | None = None,
        keep: bool = False,
        ports: dict[str, int] | None = None,
        prepare_timeout_s: float = PREPARE_TIMEOUT_S,
        failpoints: bool = False,
        seed_csv: Path | None = DEFAULT_SEED_CSV,
        gateway_args: tuple[str, ...] = (),
        pki_dir: Path | None = None,
        host: str = "127.0.0.1",
        batching: bool = True,
        relays: bool = True,
        relay_seed: int | None = None,
        participant: str | type | None = None,
        coordinator: str = "",
        idempotency: str = "",
    ) -> None:
        if seed_csv is not None and not Path(seed_csv).is_file():
            raise InvalidInput(
                f"seed file {str(seed_csv)[:200]} not found; pass seed_csv=None for no seed "
                "accounts"
            )
        if not banks:
            raise InvalidInput("a cluster needs at least one bank")
        # Each bank's 2PC participant: "module:Class" (a lab's student code), or the kit's own.
        self.participant = participant_target(participant)
        self.data_dir = (
            Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="paykit-cluster-"))
        )
        # A folder the cluster makes is its own: removed on stop() unless keep=True. A data_dir
        # the caller gives is theirs and always stays.
        self.removes_data_dir = not data_dir and not keep
        self.pki_dir = Path(pki_dir) if pki_dir else self.data_dir / "pki"
        self.bank_names = tuple(banks)
        self.prepare_timeout_s = prepare_timeout_s
        self.failpoints = failpoints
        self.seed_csv = Path(seed_csv) if seed_csv else None
        # The gateway sends a bank's legs in batches (False: one unary call per leg).
        self.gateway_args = ("--batching", "on" if batching else "off", *gateway_args)
        # The labs: a student's rules ("module:Class") run in the gateway in place of its own.
        self.gateway_args += _lab_classes(coordinator=coordinator, idempotency=idempotency)
        # The folders of a student's modules (a lab's), so the servers' processes import them.
        self._python_path = _module_folders(self.participant, coordinator, idempotency)
        self.host = host
        ports = ports or {}
        self.procs = {
            name: Proc(name, ports.get(name, 0), self.data_dir / name) for name in (*banks, GATEWAY)
        }
        # Relays: a fault relay on every link (on by default, see docs/network.md for the cost).
        self.relays = relays
        self.relay_seed = relay_seed
        self._relays: Relays | None = None
        self._relay_ports: dict[str, int] = {}  # kept across stop/start: the same addresses

    # -- whole cluster ------------------------------------------------------------

    def start(self) -> LocalCluster:
        init_pki(self.pki_dir, list(self.bank_names))
        _live.add(self)
        for name in self.bank_names:
            self.restart(name)
        self.restart(GATEWAY)
        return self

    def stop(self) -> None:
        for proc in self.procs.values():
            self._terminate(proc)
        for proc in self.procs.values():  # all were told at once; now wait for each
            self._reap(proc)
        if self._relays is not None:
            self._relays.close()
            self._relays = None
        _live.discard(self)
        if self.removes_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __repr__(self) -> str:
        states = ", ".join(f"{r['name']} {r['state']}" for r in self.status())
        faulty = [row["link"] for row in self.links() if row["state"] != "ok"]
        network = "no relays" if not self.relays else f"faults on {', '.join(faulty) or 'none'}"
        return f"<LocalCluster {states}; {network}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one server ---------------------------------------------------------------

    def _proc(self, name: str) -> Proc:
        if name not in self.procs:
            raise InvalidInput(
                f"no server {name!r} in this cluster; servers: {', '.join(self.procs)}"
            )
        return self.procs[name]

    # -- the network ----------------------------------------------------------------

    def _link_plan(self) -> list[tuple[str, str, str, str]]:
        """(name, caller, server, service) of every link, in the order links() shows them."""
        plan = [(f"{CLIENT}->{GATEWAY}", CLIENT, GATEWAY, "Gateway")]
        for bank in self.bank_names:
            plan.append((f"{GATEWAY}->{bank}", GATEWAY, bank, "Bank"))
            plan.append((f"{bank}->{GATEWAY}", bank, GATEWAY, "Coordinator"))
        return plan

    def _ensure_relays(self) -> Relays | None:
        if not self.relays or self._relays is not None:
            return self._relays
        relays = Relays(seed=self.relay_seed)
        try:
            for name, caller, server, service in self._link_plan():
                proc = self.procs[server]
                link = relays.add(
                    name,
                    caller=caller,
                    server=server,
                    service=service,
                    target=lambda proc=proc: proc.address,
                    port=self._relay_ports.get(name, 0),
                )
                self._relay_ports[name] = link.port
        except BaseException:
            relays.close()
            raise
        self._relays = relays
        return relays

    def _dial(self, caller: str, server: str) -> str:
        """The address `caller` dials to reach `server`: its link's relay, or the server."""
        relays = self._ensure_relays()
        if relays is None:
            return self.procs[server].address
        return relays.links[f"{caller}->{server}"].address

    def _network(self) -> Relays:
        if not self.relays:
            raise InvalidInput(
                "this cluster has no network relays; use LocalCluster(relays=True) to pull the "
                "network"
            )
        relays = self._relays
        if relays is None:
            raise Unavailable("the cluster is not running; start() it first")
        return relays

    def _select(self, a: str, b: str | None):
        """The links named by (a, b): every link between two processes, either way; or one
        link by name ("BankB->gateway"); or, with a process alone, every link it is on."""
        relays = self._network()
        links = list(relays.links.values())
        if b is None and a in relays.links:
            return [relays.links[a]]
        names = {CLIENT, *self.procs}
        for name in (a, b):
            if name is not None and name not in names:
                raise InvalidInput(
                    f"no process or link {str(name)[:40]!r}; processes: {', '.join(sorted(names))};"
                    f" links: {', '.join(relays.links)}"
                )
        chosen = [
            link
            for link in links
            if {link.caller, link.server} == {a, b}
            or (b is None and a in (link.caller, link.server))
        ]
        if not chosen:
            raise InvalidInput(f"no link between {a} and {b}; links: {', '.join(relays.links)}")
        return chosen

    def links(self) -> list[dict]:
        """One row per link (pandas.DataFrame(cluster.links())): its state, open connections,
        bytes forwarded and lost, and its addresses. Empty without relays."""
        if not self.relays or self._relays is None:
            return []
        return [asdict(state) for state in self._relays.states()]

    def partition(self, a: str, b: str | None = None, *, drop: str = BOTH) -> list[LinkState]:
        """Nothing passes between `a` and `b` (both alive): every byte is read and lost, so
        calls wait until their deadline. drop="replies": requests arrive and are served, the
        answers are lost; drop="requests": nothing arrives, answers would pass."""
        return self._network().drop(self._select(a, b), drop)

    def cut(self, a: str, b: str | None = None) -> list[LinkState]:
        """Resets the connections between `a` and `b` and refuses new ones: calls fail at once
        (UNAVAILABLE), and gRPC keeps dialing (backoff 0.1-1 s) until heal()."""
        return self._network().cut(self._select(a, b))

    def delay(
        self,
        a: str,
        b: str | None = None,
        *,
        ms: float,
        jitter_ms: float = 0.0,
        direction: str = BOTH,
    ) -> list[LinkState]:
        """Every byte between `a` and `b` waits ms ± jitter_ms, each way (direction="requests" or
        "replies" for one way only): a round trip gets 2 x ms longer."""
        return self._network().delay(
            self._select(a, b), ms=ms, jitter_ms=jitter_ms, direction=direction
        )

    def heal(self, a: str | None = None, b: str | None = None) -> list[LinkState]:
        """Takes back every network fault (or those between `a` and `b`)."""
        relays = self._network()
        return relays.heal(None if a is None else self._select(a, b))

    # -- commands ---------------------------------------------------------------------

    def _command(self, proc: Proc) -> list[str]:
        cmd = [sys.executable, "-m", "paykit"]
        common = [
            "--host",
            self.host,
            "--port",
            str(proc.port),
            "--data-dir",
            str(proc.data_dir),
            # Each server gets its own bundle only (the CA and other roles' keys stay out of it).
            "--pki-dir",
            str(
                self.pki_dir
                / role_folder(GATEWAY_CN if proc.name == GATEWAY else bank_cn(proc.name))
            ),
            "--exit-on-stdin-eof",
        ]
        if self.failpoints:
            common.append("--failpoints")
        if proc.name == GATEWAY:
            banks = [
                arg for b in self.bank_names for arg in ("--bank", f"{b}={self._dial(GATEWAY, b)}")
            ]
            return cmd + [
                "gateway",
                *common,
                *banks,
                "--prepare-timeout-s",
                str(self.prepare_timeout_s),
                *self.gateway_args,
            ]
        seed = ["--seed", str(self.seed_csv)] if self.seed_csv else ["--no-seed"]
        # Each bank asks for decisions through its own link, so that one link can be cut alone.
        coordinator = ["--coordinator", self._dial(proc.name, GATEWAY)] if self.relays else []
        plugged = ["--participant-class", self.participant] if self.participant else []
        return cmd + ["bank", "--name", proc.name, *common, *seed, *coordinator, *plugged]

    def restart(self, name: str) -> None:
        """Starts `name` (stopping it first if it runs) and waits until it is ready, on the port
        it had. With relays, if another process took that port meanwhile (a killed server's
        port is free for anyone), it starts on a new one: callers dial its relay, not the port."""
        proc = self._proc(name)
        if proc.running:
            self.stop_server(name)
        try:
            self._start(proc)
        except Unavailable as exc:
            if not (self.relays and proc.port and "port in use" in str(exc)):
                raise
            proc.port = 0
            self._start(proc)

    def _start(self, proc: Proc) -> None:
        name = proc.name
        proc.data_dir.mkdir(parents=True, exist_ok=True)
        out_path = proc.data_dir / f"{name}.out"
        out_path.write_text("")
        err_path = proc.data_dir / f"{name}.stderr"
        # stderr is kept across starts; a failed start reports only what this start wrote.
        proc.err_from = err_path.stat().st_size if err_path.exists() else 0
        with open(out_path, "ab") as out, open(err_path, "ab") as err:
            proc.popen = subprocess.Popen(
                self._command(proc),
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
                env=self._env(),
            )
        proc.paused = False
        proc.port = self._wait_ready(proc, out_path)

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self._python_path:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self._python_path, *filter(None, [env.get("PYTHONPATH")])]
            )
        return env

    def _wait_ready(self, proc: Proc, out_path: Path) -> int:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in out_path.read_text().splitlines():
                if line.startswith("{") and '"ready"' in line:
                    return int(json.loads(line)["port"])
            if proc.popen.poll() is not None:
                with open(proc.data_dir / f"{proc.name}.stderr", "rb") as f:
                    f.seek(proc.err_from)
                    err = f.read().decode(errors="replace")[-2000:]
                raise Unavailable(
                    f"{proc.name} exited with code {proc.popen.returncode} while starting:\n{err}"
                )
            time.sleep(0.02)
        proc.popen.kill()
        raise Unavailable(f"{proc.name} did not become ready within {READY_TIMEOUT_S} s")

    def stop_server(self, name: str) -> None:
        """SIGTERM: a clean stop (in-flight calls get a grace period)."""
        proc = self._proc(name)
        self._terminate(proc)
        self._reap(proc)

    def _terminate(self, proc: Proc) -> None:
        if proc.running:
            if proc.paused:  # a stopped process cannot handle SIGTERM until it runs again
                self.resume(proc.name)
            proc.popen.terminate()

    def _reap(self, proc: Proc) -> None:
        if proc.popen is not None:
            try:
                proc.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self._close_pipes(proc)

    def kill(self, name: str) -> None:
        """SIGKILL: the server dies at once, mid-whatever, like a power cut."""
        proc = self._proc(name)
        if proc.running:
            proc.popen.kill()
            proc.popen.wait()
        proc.paused = False
        self._close_pipes(proc)

    def wait_dead(self, name: str, timeout_s: float = 10.0) -> None:
        """Waits until `name` has died (a failpoint crashed it); raises if it did not."""
        if not self.died_within(name, timeout_s):
            raise AssertionError(f"{name} is still running after {timeout_s} s")

    def died_within(self, name: str, timeout_s: float) -> bool:
        """Whether `name` dies (or has died) within `timeout_s`."""
        proc = self._proc(name)
        try:
            proc.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        self._close_pipes(proc)
        return True

    def pause(self, name: str) -> None:
        proc = self._proc(name)
        proc.popen.send_signal(signal.SIGSTOP)
        proc.paused = True

    def resume(self, name: str) -> None:
        proc = self._proc(name)
        proc.popen.send_signal(signal.SIGCONT)
        proc.paused = False

    def arm(self, name: str, failpoint: str, action: str = "crash") -> None:
        if not self.failpoints:
            raise fp.FailpointError(
                "this cluster was started without failpoints; use LocalCluster(failpoints=True)"
            )
        fp.arm(self._proc(name).data_dir, failpoint, action)

    def disarm(self, name: str) -> None:
        """Disarms every failpoint of `name` that has not fired yet."""
        fp.disarm(self._proc(name).data_dir)

    @staticmethod
    def _close_pipes(proc: Proc) -> None:
        if proc.popen is not None and proc.popen.stdin and not proc.popen.stdin.closed:
            proc.popen.stdin.close()

    # -- looking in -------------------------------------------------------------

    @property
    def gateway_address(self) -> str:
        """Where clients dial the gateway: the client->gateway link's relay (or the gateway)."""
        return (
            self._dial(CLIENT, GATEWAY) if self._relays is not None else self.procs[GATEWAY].address
        )

    def bank_address(self, name: str) -> str:
        """The bank's own address (not through the gateway's link to it)."""
        return self._proc(name).address

    def status(self) -> list[dict]:
        """One row per server: name, pid, port, state."""
        rows = []
        for p in self.procs.values():
            state = "paused" if p.paused and p.running else "running" if p.running else "stopped"
            rows.append(
                {
                    "name": p.name,
                    "pid": p.popen.pid if p.running else None,
                    "port": p.port,
                    "state": state,
                    "data_dir": str(p.data_dir),
                }
            )
        return rows

    def log_paths(self) -> list[Path]:
        return [p.data_dir / f"{p.name}.jsonl" for p in self.procs.values()]

    def bank_db(self, name: str) -> Path:
        return self._proc(name).data_dir / f"{name}.db"

    def gateway_db(self) -> Path:
        return self.procs[GATEWAY].data_dir / "gateway.db"

    def session(self, **kwargs) -> GatewaySession:
        """A bare session with this cluster's gateway: each call sent once (no outbox, no
        retries)."""
        return GatewaySession(
            self.gateway_address, ensure_identity(self.pki_dir, CLIENT_CN), **kwargs
        )

    def client(self, **kwargs) -> PaymentClient:
        """A client of this cluster's gateway; it logs its calls to clients/client-<n>.jsonl
        in the data folder (pass log_path= to choose another file)."""
        tls = ensure_identity(self.pki_dir, CLIENT_CN)
        if kwargs.get("log_path") is None:
            kwargs["log_path"] = (
                self.data_dir / CLIENT_LOG_DIR / f"client-{next(_client_numbers)}.jsonl"
            )
        # Outboxes live with the cluster: a payment queued for this cluster can never be
        # resent to another one that happens to reuse the port later.
        kwargs.setdefault("outbox_dir", self.data_dir / "outbox")
        return PaymentClient(self.gateway_address, tls=tls, **kwargs)

    def operator(self) -> OperatorClient:
        """A client of the gateway's read-only OperatorService, with the operator certificate
        (issued from this cluster's CA on first use)."""
        return OperatorClient(self.gateway_address, ensure_identity(self.pki_dir, OPERATOR_CN))

    def books(self, bank: str = ""):
        """Every bank's accounts (or one bank's) as the OperatorService reports them: a pandas
        DataFrame (bank, account_id, balance_minor, held_minor, available_minor); banks that did
        not answer are in .attrs["unreachable"]."""
        import pandas as pd

        with self.operator() as operator:
            found = operator.accounts(bank)
        columns = ["bank", "account_id", "balance_minor", "held_minor", "available_minor"]
        df = pd.DataFrame([asdict(b) for b in found.accounts], columns=columns)
        df.attrs["unreachable"] = found.unreachable
        return df

    def in_flight(self):
        """The payments not settled yet, oldest first, as a pandas DataFrame."""
        import pandas as pd

        with self.operator() as operator:
            rows = [
                {
                    **asdict(f.payment),
                    "username": f.username,
                    "debit_acked": f.debit_acked,
                    "credit_acked": f.credit_acked,
                }
                for f in operator.in_flight()
            ]
        return pd.DataFrame(rows)


def participant_target(participant: str | type | None) -> str:
    """The "module:Class" of a participant class or path, checked: a bank can import it."""
    if participant is None or participant == "":
        return ""
    if isinstance(participant, type):
        participant = f"{participant.__module__}:{participant.__qualname__}"
    module_name, sep, attr = participant.partition(":")
    if not sep or not module_name or not attr or len(participant) > 200:
        raise InvalidInput(f"participant {participant[:40]!r} is not of the form module:Class")
    if module_name == "__main__":
        raise InvalidInput(
            "a participant class defined in a notebook or script cannot be imported by a bank's "
            "process: put it in a module (%%writefile mylab.py) and pass 'mylab:Class'"
        )
    _module_folder(participant)  # found here, so the banks can import it
    return participant


def _lab_classes(**classes: str) -> tuple[str, ...]:
    return tuple(
        arg for flag, dotted in classes.items() if dotted for arg in (f"--{flag}-class", dotted)
    )


def _module_folders(*dotted: str) -> list[str]:
    """The folders the "module:Class" paths import from here, each once."""
    return list(dict.fromkeys(_module_folder(path) for path in dotted if path))


def _module_folder(dotted: str) -> str:
    """The folder "module:Class" is imported from here (its top package's parent), which the
    servers' processes then get on their PYTHONPATH."""
    module_name = dotted.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module_name)  # the module itself: its top package may
    except (ImportError, ValueError):  # be a namespace package, which has no file
        spec = None
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        raise InvalidInput(f"cannot find module {module_name[:40]!r} (is its folder on sys.path?)")
    origin = Path(spec.origin).resolve()
    depth = module_name.count(".") + (1 if origin.name == "__init__.py" else 0)
    return str(origin.parents[depth])


@atexit.register
def _stop_all() -> None:
    for cluster in list(_live):
        cluster.stop()
