"""The `paykit` command: servers, the interactive client, a whole local cluster, the demo, the
PKI."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from paykit.core import config
from paykit.core.commandline import finish_parser
from paykit.core.errors import PaykitError

EPILOG = "Run state (databases, logs, the dev PKI) goes to $PAYKIT_HOME, else ./.paykit."


def _pki_dir(args) -> Path:
    return Path(args.pki_dir) if args.pki_dir else config.state_dir() / "pki"


def _data_dir(args, name: str) -> Path:
    return Path(args.data_dir) if args.data_dir else config.state_dir() / "data" / name


def _server_args(p: argparse.ArgumentParser, port: int) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=port,
        help=f"port to listen on, 0 for any free port (default {port})",
    )
    p.add_argument(
        "--data-dir",
        help="folder for this server's database and logs (default: under the state folder)",
    )
    p.add_argument(
        "--pki-dir", help="folder of the dev PKI (default: <state folder>/pki; made on first use)"
    )
    p.add_argument(
        "--failpoints",
        action="store_true",
        default=os.environ.get("PAYKIT_FAILPOINTS") == "1",
        help="allow failpoints to be armed (fault tests only; also PAYKIT_FAILPOINTS=1)",
    )
    p.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)


def _bank_pair(text: str) -> tuple[str, str]:
    name, eq, address = text.partition("=")
    if not eq or not name or ":" not in address:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=HOST:PORT, e.g. BankA=127.0.0.1:50051"
        )
    return name, address


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a port (0-65535)")
    return int(text)


def _address(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not HOST:PORT, e.g. 127.0.0.1:50050")
    return text


def _seed_csv(args) -> Path | None:
    """The bank's seed file: --seed, else the one paykit ships; a missing file is an error."""
    if args.no_seed:
        return None
    from paykit import packaged

    path = Path(args.seed) if args.seed else packaged.seed_csv()
    if not path.is_file():
        raise PaykitError(
            f"seed file {str(path)[:200]} not found; give another with --seed, or --no-seed"
        )
    return path


def cmd_bank(args) -> int:
    from paykit.bank import server as bank
    from paykit.rpc import pki

    seed_csv = _seed_csv(args)
    tls = pki.load_identity(
        _pki_dir(args), pki.bank_cn(args.name), sans=tuple(args.san), issue=True
    )
    bank.serve(
        config.BankConfig(
            name=args.name,
            host=args.host,
            port=args.port,
            data_dir=_data_dir(args, args.name),
            tls=tls,
            seed_csv=seed_csv,
            coordinator=args.coordinator or "",
            failpoints=args.failpoints,
            participant_class=args.participant_class,
        ),
        exit_on_stdin_eof=args.exit_on_stdin_eof,
    )
    return 0


def cmd_gateway(args) -> int:
    from paykit.gateway import server as gateway
    from paykit.rpc import pki

    if not args.bank:
        raise PaykitError("the gateway needs at least one --bank NAME=HOST:PORT")
    if args.prepare_timeout_s <= 0:
        raise PaykitError("--prepare-timeout-s must be more than 0")
    _check_lab_classes(args)
    tls = pki.load_identity(_pki_dir(args), pki.GATEWAY_CN, sans=tuple(args.san), issue=True)
    gateway.serve(
        config.GatewayConfig(
            host=args.host,
            port=args.port,
            advertise=args.advertise or "",
            banks=dict(args.bank),
            data_dir=_data_dir(args, "gateway"),
            tls=tls,
            prepare_timeout_s=args.prepare_timeout_s,
            token_ttl_s=args.token_ttl_s,
            idempotency_retention_s=args.idempotency_retention_s,
            sign_in_free_failures=args.sign_in_free_failures,
            sign_in_peer_per_min=args.sign_in_peer_per_min,
            registrations_per_hour=args.registrations_per_hour,
            opening_minor_per_hour=args.opening_minor_per_hour,
            batching=args.batching == "on",
            failpoints=args.failpoints,
            coordinator_class=args.coordinator_class,
            idempotency_class=args.idempotency_class,
        ),
        exit_on_stdin_eof=args.exit_on_stdin_eof,
    )
    return 0


def cmd_client(args) -> int:
    from paykit.client.api import PaymentClient
    from paykit.client.bundle import find_client_bundle
    from paykit.client.line_editing import default_history_path
    from paykit.client.shell import Shell

    # --pki-dir, else $PAYKIT_CERTS, else the default folder; never made here. Said on a
    # terminal only: in a pipe, stderr holds errors alone (docs/client.md), and a TLS error
    # names the folder anyway.
    bundle = find_client_bundle(args.pki_dir)
    if sys.stdin.isatty():
        print(f"[CLIENT] {bundle.describe()}", file=sys.stderr)
    outbox_dir = Path(args.outbox_dir) if args.outbox_dir else None
    # Like the servers, the CLI client logs every call attempt (JSON lines, no secrets).
    log_path = (
        Path(args.log) if args.log else config.state_dir() / "logs" / f"client-{os.getpid()}.jsonl"
    )
    with PaymentClient(
        args.gateway, tls=bundle.files, outbox_dir=outbox_dir, log_path=log_path
    ) as client:
        # exit codes, --json, where errors go: paykit.client.exit_codes and docs/client.md
        shell = Shell(client, default_bank=args.bank, err=sys.stderr, json=args.json)
        if not sys.stdin.isatty():  # piped: no prompt, no readline
            return shell.run(sys.stdin)
        return shell.interact(
            Path(args.history) if args.history else default_history_path(),
            banner=f"Connected to gateway {args.gateway}. Type help for commands, quit to leave.",
        )


# `paykit up`'s servers and the flag that sets each one's port.
UP_PORT_FLAGS = {"BankA": "--bank-a-port", "BankB": "--bank-b-port", "gateway": "--gateway-port"}


def _port_taken(host: str, port: int) -> bool:
    """Whether something listens on host:port (SO_REUSEADDR, as the servers bind: a port with
    only closing connections on it is free)."""
    import socket

    if port == 0:
        return False
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _up_port_line(name: str, host: str, port: int) -> str:
    flag = UP_PORT_FLAGS[name]
    return (
        f"paykit up: {name} cannot listen on {host}:{port}: the port is taken (another program, "
        f"or a paykit up already running); choose another with {flag} PORT (0: any free port)"
    )


def _up_start_failed(exc: Exception, host: str, ports: dict[str, int]) -> None:
    """One line for the server that failed to start (never its whole log)."""
    text = str(exc)
    name = next((n for n in UP_PORT_FLAGS if text.startswith(n)), None)
    if name and "port in use" in text:
        print(_up_port_line(name, host, ports[name]), file=sys.stderr)
        return
    lines = [line for line in text.splitlines() if line.strip()]
    why = f" ({lines[-1].strip()[:200]})" if len(lines) > 1 else ""
    print(f"paykit up: {lines[0][:200] if lines else 'a server failed'}{why}", file=sys.stderr)


def _up_banner(cluster, host: str) -> None:
    for row in cluster.status():
        print(f"[paykit] {row['name']:8} pid {row['pid']:<7} listening on {host}:{row['port']}")
    print(f"[paykit] data and logs in {cluster.data_dir}; PKI in {cluster.pki_dir}")
    gateway_port = cluster.procs["gateway"].port
    print(f"[paykit] in another terminal: paykit client --gateway 127.0.0.1:{gateway_port}")
    print("[paykit] Ctrl+C stops all three.", flush=True)


def cmd_up(args) -> int:
    from paykit.core.errors import Unavailable
    from paykit.lab.cluster import LocalCluster

    ports = {"BankA": args.bank_a_port, "BankB": args.bank_b_port, "gateway": args.gateway_port}
    taken = [name for name, port in ports.items() if _port_taken(args.host, port)]
    for name in taken:
        print(_up_port_line(name, args.host, ports[name]), file=sys.stderr)
    if taken:
        return 1
    # No relays: nothing here pulls the network, and other hosts dial the servers' own ports.
    cluster = LocalCluster(
        tuple(config.DEFAULT_BANK_PORTS),
        data_dir=config.state_dir() / "data",
        ports=ports,
        prepare_timeout_s=args.prepare_timeout_s,
        pki_dir=config.state_dir() / "pki",
        host=args.host,
        relays=False,
    )
    try:
        cluster.start()
    except Unavailable as exc:  # a port taken since the check above, or a server that failed
        cluster.stop()
        _up_start_failed(exc, args.host, ports)
        return 1
    try:  # Ctrl+C at any moment from here on stops all three and exits 0
        _up_banner(cluster, args.host)
        while all(r["state"] != "stopped" for r in cluster.status()):
            time.sleep(0.5)
        print("[paykit] a server stopped on its own; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\n[paykit] stopping...")
    finally:
        cluster.stop()
    print("[paykit] all stopped")
    return 0


def cmd_demo(args) -> int:
    from paykit.lab.demo import run_demo

    return run_demo()


def cmd_pki(args) -> int:
    from paykit.rpc import pki

    target = Path(args.dir) if args.dir else config.state_dir() / "pki"
    files = pki.init_pki(target, args.bank or list(config.DEFAULT_BANK_PORTS), sans=tuple(args.san))
    print(f"[paykit] dev PKI in {target}: the CA in ca/, one bundle per role")
    for cn, f in files.items():
        print(f"  {cn:22} {f.cert.parent.name}/")
    print("[paykit] keys are private: never commit them; give each host only its own bundle")
    print("[paykit] (paykit pki export ROLE DIR)")
    return 0


def cmd_pki_export(args) -> int:
    from paykit.rpc import pki

    source = Path(args.dir) if args.dir else config.state_dir() / "pki"
    files = pki.export_bundle(source, args.role, Path(args.out), sans=tuple(args.san))
    names = ", ".join(p.name for p in pki.bundle_paths(files))
    print(f"[paykit] {args.role} bundle in {args.out}: {names}")
    if args.role == "operator":  # no paykit server runs with it: it reads the books
        print("[paykit] it reads the books (OperatorService): grpcurl lines in docs/security.md")
    else:
        print(f"[paykit] copy that folder to the {args.role} host and give it --pki-dir")
    return 0


TOOLS = {
    "chaos": "the Jepsen-style fault test: payers, kills, pauses, then invariant checks",
    "bench": "payments/s and latency against the gRPC floor",
    "lessons": "the lessons: `paykit lessons copy DIR` or `open [DIR]` (JupyterLab); "
    "`student` writes the student versions (nbgrader)",
    "lab": "the labs: `paykit lab grade LAB module:Class` grades your code with the crash tests",
}
# tools whose module is not named after them
TOOL_MODULES = {"lessons": "handout", "lab": "grading"}


def _tool(name: str):
    def run(args) -> int:
        module = importlib.import_module(f"paykit.lab.{TOOL_MODULES.get(name, name)}")
        return module.main(args.argv)

    return run


def _add_up(sub) -> None:
    p = sub.add_parser(
        "up", help="start BankA:50051, BankB:50052 and the gateway:50050 (Ctrl+C stops all)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--prepare-timeout-s",
        type=float,
        default=config.PREPARE_TIMEOUT_S,
        help=f"the gateway's vote timeout (default {config.PREPARE_TIMEOUT_S})",
    )
    p.set_defaults(func=cmd_up)
    _add_up_ports(p)


def _add_up_ports(p: argparse.ArgumentParser) -> None:
    defaults = {**config.DEFAULT_BANK_PORTS, "gateway": config.DEFAULT_GATEWAY_PORT}
    for name, flag in UP_PORT_FLAGS.items():
        p.add_argument(
            flag,
            type=_port,
            default=defaults[name],
            metavar="PORT",
            help=f"{name}'s port (default {defaults[name]}; 0: any free port)",
        )


def _add_bank(sub) -> None:
    p = sub.add_parser("bank", help="run one bank server", epilog=EPILOG)
    p.add_argument("--name", required=True, help="the bank's name, e.g. BankA")
    _server_args(p, 50051)
    p.add_argument(
        "--seed",
        help="CSV of bank,account_id,opening_balance; this bank's rows are opened at start "
        "(default: the seed accounts paykit ships, e.g. BankB's recipient123)",
    )
    p.add_argument("--no-seed", action="store_true", help="open no seed accounts")
    p.add_argument(
        "--coordinator",
        type=_address,
        metavar="HOST:PORT",
        help="where to ask the gateway for decisions on in-doubt payments, instead of the "
        "address each Prepare names (LocalCluster gives each bank its own network relay)",
    )
    p.add_argument(
        "--san", action="append", default=[], help="extra host name or IP for its certificate"
    )
    p.add_argument(
        "--participant-class",
        default="",
        metavar="MODULE:CLASS",
        help="the 2PC participant's rules: a paykit.bank.participant.Participant subclass "
        "(the participant lab's student code; its module on PYTHONPATH). Default: the kit's own",
    )
    p.set_defaults(func=cmd_bank)


def _add_gateway(sub) -> None:
    p = sub.add_parser("gateway", help="run the gateway (the 2PC coordinator)", epilog=EPILOG)
    _server_args(p, config.DEFAULT_GATEWAY_PORT)
    p.add_argument(
        "--bank",
        action="append",
        type=_bank_pair,
        default=[],
        metavar="NAME=HOST:PORT",
        help="a bank it coordinates (repeat; the first is where users register by default)",
    )
    p.add_argument(
        "--prepare-timeout-s",
        type=float,
        default=config.PREPARE_TIMEOUT_S,
        help="how long to wait for both votes before aborting "
        f"(default {config.PREPARE_TIMEOUT_S})",
    )
    p.add_argument(
        "--token-ttl-s", type=float, default=config.TOKEN_TTL_S, help="how long a sign-in lasts"
    )
    p.add_argument(
        "--idempotency-retention-s",
        type=float,
        default=config.IDEMPOTENCY_RETENTION_S,
        help="how long idempotency keys are kept (default 24 h)",
    )
    p.add_argument(
        "--batching",
        choices=("on", "off"),
        default="on",
        help="send a bank's legs in batches (Exchange) or one call each (default on)",
    )
    _limit_args(p)
    p.add_argument(
        "--advertise", help="host:port banks use to reach this gateway (default: host:port)"
    )
    p.add_argument(
        "--san", action="append", default=[], help="extra host name or IP for its certificate"
    )
    _lab_class_args(p)
    p.set_defaults(func=cmd_gateway)


def _check_lab_classes(args) -> None:
    """A student's class that does not load is refused before the gateway starts."""
    from paykit.core import plugins
    from paykit.gateway.decisions import CoordinatorBase
    from paykit.gateway.keystore import IdempotencyStoreBase

    if args.coordinator_class:
        plugins.load_class(args.coordinator_class, CoordinatorBase)
    if args.idempotency_class:
        plugins.load_class(args.idempotency_class, IdempotencyStoreBase)


def _lab_class_args(p) -> None:
    """The labs: a student's rules in place of the gateway's own (paykit lab grade ...)."""
    p.add_argument(
        "--coordinator-class",
        default="",
        metavar="MODULE:CLASS",
        help="the 2PC decision and recovery rules (a paykit.gateway.decisions.CoordinatorBase)",
    )
    p.add_argument(
        "--idempotency-class",
        default="",
        metavar="MODULE:CLASS",
        help="the idempotency store (a paykit.gateway.keystore.IdempotencyStoreBase)",
    )


def _limit_args(p: argparse.ArgumentParser) -> None:
    """Limits per caller and time (docs/security.md); the defaults are paykit.core.config's."""
    for flag, default, text in (
        ("--sign-in-free-failures", config.SIGN_IN_FREE_FAILURES,
         "failed sign-ins of a name from one address before waits begin (1, 2, 4 s ...)"),
        ("--sign-in-peer-per-min", config.SIGN_IN_PEER_PER_MIN,
         "failed sign-ins one address may make a minute, over all names"),
        ("--registrations-per-hour", config.REGISTRATIONS_PER_HOUR,
         "registrations one address may make an hour"),
        ("--opening-minor-per-hour", config.OPENING_MINOR_PER_HOUR,
         "opening balances (minor units) one address may register an hour"),
    ):  # fmt: skip
        p.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")


def _add_client(sub) -> None:
    p = sub.add_parser(
        "client", help="the interactive client (reads commands from stdin when piped)"
    )
    p.add_argument(
        "--gateway", default=f"127.0.0.1:{config.DEFAULT_GATEWAY_PORT}", help="gateway host:port"
    )
    p.add_argument("--bank", default="", help="bank that register uses when none is given")
    p.add_argument(
        "--log",
        help="JSON-lines log of every call (default: <state folder>/logs/client-<pid>.jsonl)",
    )
    p.add_argument(
        "--pki-dir",
        "--certs",
        dest="pki_dir",
        help="the client's certificate bundle, or a PKI folder holding one in client/ (default: "
        "$PAYKIT_CERTS, else <state folder>/pki); the client never creates certificates",
    )
    p.add_argument(
        "--outbox-dir",
        help="folder of the offline outboxes, one file per gateway and user "
        "(default: <state folder>/outbox)",
    )
    _client_script_args(p)
    p.set_defaults(func=cmd_client)


def _client_script_args(p: argparse.ArgumentParser) -> None:
    from paykit.client.exit_codes import EPILOG as CLIENT_EPILOG

    p.epilog = CLIENT_EPILOG
    p.add_argument(
        "--json",
        action="store_true",
        help="for scripts: one JSON object per command on stdout, errors included, no [CLIENT] "
        "lines",
    )
    p.add_argument(
        "--history",
        metavar="FILE",
        help="the terminal's command history, kept across sessions; lines with a password are "
        "never written (default: <state folder>/client_history)",
    )


def _add_pki(sub) -> None:
    p = sub.add_parser("pki", help="the dev PKI")
    pki_sub = p.add_subparsers(dest="pki_command", required=True, metavar="ACTION")
    q = pki_sub.add_parser("init", help="create the CA and certificates (kept if they exist)")
    q.add_argument("--dir", help="where (default: <state folder>/pki)")
    q.add_argument("--bank", action="append", help="bank names (default: BankA, BankB)")
    q.add_argument(
        "--san", action="append", default=[], help="extra host name or IP for every certificate"
    )
    q.set_defaults(func=cmd_pki)
    e = pki_sub.add_parser(
        "export",
        help="write one role's bundle (CA certificate, its own keys) for another host",
    )
    e.add_argument(
        "role",
        metavar="ROLE",
        help="gateway, client, operator (the read-only OperatorService) or bank-NAME (bank-BankA)",
    )
    e.add_argument("out", metavar="DIR", help="the folder to write (made 0700)")
    e.add_argument("--dir", help="the PKI folder that holds the CA (default: <state folder>/pki)")
    e.add_argument(
        "--san", action="append", default=[], help="extra host name or IP (server roles)"
    )
    e.set_defaults(func=cmd_pki_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paykit", description="A miniature payment system for learning.", epilog=EPILOG
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_up(sub)
    _add_bank(sub)
    _add_gateway(sub)
    _add_client(sub)
    p = sub.add_parser(
        "demo", help="start a cluster on free ports, run a scripted tour, stop, exit 0"
    )
    p.set_defaults(func=cmd_demo)
    # Tools with their own option parsers: `paykit chaos --help`, `paykit lessons student --help`.
    for name, text in TOOLS.items():
        sub.add_parser(name, help=text)
    _add_pki(sub)
    return finish_parser(parser)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:  # they parse their own options, --help included
        args = argparse.Namespace(func=_tool(argv[0]), argv=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PaykitError as err:
        print(f"paykit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
