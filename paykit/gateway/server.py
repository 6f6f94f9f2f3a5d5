"""The gateway server: the thin gRPC shell around users, payments and the coordinator."""

from __future__ import annotations

import threading
from dataclasses import astuple
from pathlib import Path

import grpc

from paykit.core import eventlog, paging, plugins
from paykit.core.config import GatewayConfig
from paykit.core.db import Database
from paykit.core.errors import InvalidInput, PermissionDenied, UnknownPayment, field_of
from paykit.core.ids import check_account_id, prefix
from paykit.core.money import OPENING_BALANCE_MAX_MINOR, check_amount_minor, format_minor
from paykit.core.twopc import Decision
from paykit.gateway import idempotency, payments, users
from paykit.gateway.banks import BankChannels
from paykit.gateway.coordinator import DRIVE_INLINE_S, Coordinator
from paykit.gateway.decisions import CoordinatorBase, PluggedCoordinator
from paykit.gateway.keystore import IdempotencyStoreBase, SqlKeys
from paykit.gateway.operator import OperatorServicer
from paykit.gateway.payments import PaymentRecord, SearchFilter
from paykit.gateway.throttle import PeerBudget, SignInThrottle
from paykit.rpc.interceptors import bearer_token, current_user, note, peer_host
from paykit.rpc.serving import SERVICE_NAMES, Server
from paykit.rpc.status import servicer_method
from paykit.v1 import payment_pb2 as pb
from paykit.v1 import payment_pb2_grpc as pb_grpc

REDRIVE_EVERY_S = 0.5
PRUNE_EVERY_S = 60.0  # at most; a shorter retention prunes more often (see prune_every_s)
PRUNE_EVERY_MIN_S = 0.5
STATUS_TO_PB = {
    payments.PENDING: pb.PAYMENT_STATUS_PENDING,
    payments.SUCCEEDED: pb.PAYMENT_STATUS_SUCCEEDED,
    payments.FAILED: pb.PAYMENT_STATUS_FAILED,
}
STATUS_FROM_PB = {v: k for k, v in STATUS_TO_PB.items()}
DECISION_TO_PB = {
    Decision.COMMIT: pb.DECISION_COMMIT,
    Decision.ABORT: pb.DECISION_ABORT,
    Decision.PENDING: pb.DECISION_PENDING,
}


def prune_every_s(retention_s: float) -> float:
    """Prune at least twice per retention, so no key outlives it by more than half of it."""
    return min(PRUNE_EVERY_S, max(retention_s / 2, PRUNE_EVERY_MIN_S))


def open_database(data_dir: Path) -> Database:
    return Database(
        Path(data_dir) / "gateway.db", users.SCHEMA + payments.SCHEMA + idempotency.SCHEMA
    )


def payment_to_pb(p: PaymentRecord) -> pb.Payment:
    return pb.Payment(
        payment_id=p.payment_id,
        from_bank=p.from_bank,
        from_account=p.from_account,
        to_bank=p.to_bank,
        to_account=p.to_account,
        amount_minor=p.amount_minor,
        status=STATUS_TO_PB[p.status],
        failure_reason=p.failure_reason,
        failure_message=p.failure_message,
        created_unix_ms=p.created_unix_ms,
        idempotency_key=p.idempotency_key,
        settled=p.settled,
    )


def encode_pay_response(p: PaymentRecord) -> bytes:
    return pb.PayResponse(payment=payment_to_pb(p)).SerializeToString(deterministic=True)


def register_budgets(cfg: GatewayConfig) -> tuple[PeerBudget, PeerBudget]:
    """(registrations, opening balances) one address may make per hour."""
    return (
        PeerBudget(
            cfg.registrations_per_hour,
            3600.0,
            f"registrations from one address are limited to {cfg.registrations_per_hour} an hour",
        ),
        PeerBudget(
            cfg.opening_minor_per_hour,
            3600.0,
            "opening balances from one address are limited to "
            f"{format_minor(cfg.opening_minor_per_hour)} an hour",
        ),
    )


class GatewayServicer(pb_grpc.GatewayServicer):
    def __init__(
        self,
        db: Database,
        users_: users.Users,
        banks: BankChannels,
        coordinator: Coordinator,
        budgets: tuple[PeerBudget, PeerBudget],
    ) -> None:
        self.db = db
        self.users = users_
        self.banks = banks
        self.coordinator = coordinator
        self.registrations, self.openings = budgets
        # Registration is rare; one at a time keeps it simple. It runs on the sign-in pool
        # (paykit.rpc.interceptors.POOLS), so calls waiting here hold none of the other threads.
        self._register_lock = threading.Lock()

    @servicer_method
    def Register(self, request, context):
        username, bank = self._check_registration(request)
        # Counted before the name is looked up: Register says whether a name is taken (a user
        # must learn it), so how fast anyone can ask is limited (docs/security.md).
        peer = peer_host(context)
        self.registrations.take(peer, 1)
        self.users.check_new(request.username, request.password)
        self.openings.take(peer, request.opening_balance_minor)
        try:
            password_hash = users.hash_password(request.password)  # slow: outside the lock
            user = self._open_and_create(request, username, bank, password_hash)
        except BaseException:
            self.openings.give_back(peer, request.opening_balance_minor)
            raise
        note(user=user.username, amount_minor=request.opening_balance_minor)
        return pb.RegisterResponse(
            username=user.username, bank=user.bank, account_id=user.account_id
        )

    def _check_registration(self, request) -> tuple[str, str]:
        with field_of("username"):
            username = users.normalise_username(request.username)
        users.check_password_length(request.password, new=True)
        bank = request.bank or self.banks.names[0]
        with field_of("bank"):
            self.banks.stub(bank)  # UnknownBank if not ours
        with field_of("account_id"):
            check_account_id(request.account_id)
        with field_of("opening_balance_minor"):
            check_amount_minor(
                request.opening_balance_minor, allow_zero=True, max_minor=OPENING_BALANCE_MAX_MINOR
            )
        return username, bank

    def _open_and_create(self, request, username: str, bank: str, password_hash: bytes):
        with self._register_lock:
            self.users.check_new(request.username, request.password)
            # opened_for: if this registration is cut short after the bank opened the account
            # (crash, lost reply), registering again with the same name completes it.
            self.banks.call(
                bank,
                "OpenAccount",
                pb.OpenAccountRequest(
                    account_id=request.account_id,
                    opening_balance_minor=request.opening_balance_minor,
                    opened_for=username,
                ),
            )
            return self.users.create(username, password_hash, bank, request.account_id)

    @servicer_method
    def Authenticate(self, request, context):
        session = self.users.authenticate(
            request.username, request.password, peer=peer_host(context)
        )
        note(user=session.username)
        return pb.AuthenticateResponse(
            token=session.token, expires_unix_ms=session.expires_unix_ms, username=session.username
        )

    @servicer_method
    def Logout(self, request, context):
        self.users.logout(bearer_token(context))
        return pb.LogoutResponse()

    @servicer_method
    def GetBalance(self, request, context):
        user = current_user()
        other_bank = request.bank and request.bank != user.bank
        if other_bank or (request.account_id and request.account_id != user.account_id):
            raise PermissionDenied("you can see only your own balance")
        b = self.banks.call(
            user.bank, "GetBalance", pb.BankGetBalanceRequest(account_id=user.account_id)
        )
        return pb.GetBalanceResponse(
            bank=b.bank,
            account_id=b.account_id,
            balance_minor=b.balance_minor,
            held_minor=b.held_minor,
            available_minor=b.available_minor,
        )

    @servicer_method
    def Pay(self, request, context):
        user = current_user()
        if request.from_account and request.from_account != user.account_id:
            raise PermissionDenied(f"you can pay only from your own account ({user.account_id})")
        with field_of("idempotency_key"):
            key = idempotency.check_key(request.idempotency_key)
        note(idempotency_key=key, amount_minor=request.amount_minor)
        with field_of("amount_minor"):
            check_amount_minor(request.amount_minor)
        with field_of("to_bank"):
            self.banks.stub(request.to_bank)
        with field_of("to_account"):
            check_account_id(request.to_account)
            if (request.to_bank, request.to_account) == (user.bank, user.account_id):
                raise InvalidInput("you cannot pay yourself; choose another recipient")
        payment_id, response = self.coordinator.pay(
            username=user.username,
            from_bank=user.bank,
            from_account=user.account_id,
            to_bank=request.to_bank,
            to_account=request.to_account,
            amount_minor=request.amount_minor,
            key=key,
        )
        note(txn_id=payment_id)  # the 2PC txn id: it joins this rpc line to the 2pc.* events
        return response  # the stored bytes, sent as they are (see add_gateway)

    @servicer_method
    def GetPayment(self, request, context):
        user = current_user()
        record = payments.get(self.db.read(), request.payment_id)
        mine = record is not None and (
            record.username == user.username
            or (record.to_bank, record.to_account) == (user.bank, user.account_id)
        )
        if not mine:
            raise UnknownPayment(f"you have no payment {prefix(request.payment_id)!r}")
        return payment_to_pb(record)

    @servicer_method
    def SearchPayments(self, request, context):
        user = current_user()
        if request.username and users.normalise_username(request.username) != user.username:
            raise PermissionDenied("you can search only your own payments")
        f = SearchFilter(
            status=STATUS_FROM_PB.get(request.status, ""),
            counterparty=request.counterparty,
            min_amount_minor=request.min_amount_minor,
            max_amount_minor=request.max_amount_minor,
            since_unix_ms=request.since_unix_ms,
            until_unix_ms=request.until_unix_ms,
        ).check()
        size = paging.page_size(
            request.page_size,
            default=payments.SEARCH_PAGE_DEFAULT,
            maximum=payments.SEARCH_PAGE_MAX,
        )
        # A token belongs to one user's search with one filter (page_size may change).
        query = paging.fingerprint("SearchPayments", user.username, *astuple(f))
        after = paging.decode_token(request.page_token, query, (int, str))
        found, more = payments.search(
            self.db.read(),
            user.username,
            user.bank,
            user.account_id,
            f,
            page_size=size,
            after=after,
        )
        token = ""
        if more:  # the next page starts after this page's last payment
            token = paging.encode_token(query, (found[-1].created_unix_ms, found[-1].payment_id))
        return pb.SearchPaymentsResponse(
            payments=[payment_to_pb(p) for p in found], next_page_token=token
        )


class CoordinatorServicer(pb_grpc.CoordinatorServicer):
    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    @servicer_method
    def GetDecision(self, request, context):
        note(txn_id=request.txn_id)
        decision = self.coordinator.decision_for(request.txn_id)
        return pb.GetDecisionResponse(decision=DECISION_TO_PB[decision])


def add_gateway(servicer: GatewayServicer, server: grpc.Server) -> None:
    """Like the generated add_GatewayServicer_to_server, but a handler may return bytes:
    Pay returns the stored response exactly as it was stored (idempotent replay)."""

    def serialize(msg) -> bytes:
        return msg if isinstance(msg, bytes) else msg.SerializeToString()

    service = pb.DESCRIPTOR.services_by_name["Gateway"]
    handlers = {
        m.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, m.name),
            request_deserializer=getattr(pb, m.input_type.name).FromString,
            response_serializer=serialize,
        )
        for m in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _every(period_s: float, stop: threading.Event, fn) -> None:
    def loop():
        while not stop.wait(period_s):
            try:
                fn()
            except Exception as exc:  # keep going: a decision must reach every bank
                eventlog.event("gateway.background_error", task=fn.__name__, error=repr(exc))

    threading.Thread(target=loop, name=fn.__name__, daemon=True).start()


def _coordinator(cfg: GatewayConfig, db: Database, banks: BankChannels, port: int) -> Coordinator:
    host = cfg.host if cfg.host not in ("", "0.0.0.0", "::", "[::]") else "127.0.0.1"
    keys = SqlKeys
    if cfg.idempotency_class:  # Lab C: a student's idempotency store
        keys = plugins.load_class(cfg.idempotency_class, IdempotencyStoreBase)
    kind, rules = Coordinator, {}
    if cfg.coordinator_class:  # Lab B: a student's decision and recovery rules
        kind = PluggedCoordinator
        rules = {"rules": plugins.load_class(cfg.coordinator_class, CoordinatorBase)}
    return kind(
        db,
        banks,
        advertise=cfg.advertise or f"{host}:{port}",
        prepare_timeout_s=cfg.prepare_timeout_s,
        encode_response=encode_pay_response,
        retention_s=cfg.idempotency_retention_s,
        parallel_decisions=not cfg.failpoints,
        keys=keys(),
        **rules,
    )


def _background(cfg: GatewayConfig, coordinator: Coordinator, stop: threading.Event) -> None:
    """The sweeper and redriver every REDRIVE_EVERY_S, and key pruning (once now, then again)."""

    def redrive():
        coordinator.abort_stranded()
        coordinator.redrive(min_age_s=DRIVE_INLINE_S + REDRIVE_EVERY_S)

    coordinator.prune_keys()
    _every(REDRIVE_EVERY_S, stop, redrive)
    _every(prune_every_s(cfg.idempotency_retention_s), stop, coordinator.prune_keys)


def serve(cfg: GatewayConfig, *, exit_on_stdin_eof: bool = False) -> None:
    """Runs the gateway until SIGTERM/SIGINT (or its parent's death)."""
    # The server first: it makes (and locks) the data folder the database lives in.
    server = Server(
        name="gateway",
        host=cfg.host,
        port=cfg.port,
        data_dir=cfg.data_dir,
        tls=cfg.tls,
        workers=cfg.workers,
        failpoints_enabled=cfg.failpoints,
    )
    db = open_database(cfg.data_dir)
    users_ = users.Users(
        db,
        token_ttl_s=cfg.token_ttl_s,
        throttle=SignInThrottle(
            free_failures=cfg.sign_in_free_failures, peer_per_min=cfg.sign_in_peer_per_min
        ),
    )
    server.check_tokens_with(users_.user_for_token)
    banks = BankChannels(cfg.banks, cfg.tls, batching=cfg.batching)
    coordinator = _coordinator(cfg, db, banks, server.port)
    coordinator.recover()  # before serving: undecided payments are aborted, so GetDecision is final
    gateway = GatewayServicer(db, users_, banks, coordinator, register_budgets(cfg))
    server.add_services(
        [
            (add_gateway, gateway, SERVICE_NAMES["Gateway"]),
            (
                pb_grpc.add_CoordinatorServicer_to_server,
                CoordinatorServicer(coordinator),
                SERVICE_NAMES["Coordinator"],
            ),
            (
                pb_grpc.add_OperatorServiceServicer_to_server,
                OperatorServicer(db, banks, payment_to_pb),
                SERVICE_NAMES["OperatorService"],
            ),
        ]
    )
    server.start()
    stop = threading.Event()
    _background(cfg, coordinator, stop)
    server.ready()
    server.serve_until_stopped(exit_on_stdin_eof=exit_on_stdin_eof)
    stop.set()
    db.close()
