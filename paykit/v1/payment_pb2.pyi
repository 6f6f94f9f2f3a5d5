from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_PENDING: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_SUCCEEDED: _ClassVar[PaymentStatus]
    PAYMENT_STATUS_FAILED: _ClassVar[PaymentStatus]

class Leg(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEG_UNSPECIFIED: _ClassVar[Leg]
    LEG_DEBIT: _ClassVar[Leg]
    LEG_CREDIT: _ClassVar[Leg]

class Vote(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOTE_UNSPECIFIED: _ClassVar[Vote]
    VOTE_YES: _ClassVar[Vote]
    VOTE_NO: _ClassVar[Vote]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_PENDING: _ClassVar[Decision]
    DECISION_COMMIT: _ClassVar[Decision]
    DECISION_ABORT: _ClassVar[Decision]
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
PAYMENT_STATUS_PENDING: PaymentStatus
PAYMENT_STATUS_SUCCEEDED: PaymentStatus
PAYMENT_STATUS_FAILED: PaymentStatus
LEG_UNSPECIFIED: Leg
LEG_DEBIT: Leg
LEG_CREDIT: Leg
VOTE_UNSPECIFIED: Vote
VOTE_YES: Vote
VOTE_NO: Vote
DECISION_UNSPECIFIED: Decision
DECISION_PENDING: Decision
DECISION_COMMIT: Decision
DECISION_ABORT: Decision

class RegisterRequest(_message.Message):
    __slots__ = ("username", "password", "account_id", "opening_balance_minor", "bank")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OPENING_BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    BANK_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    account_id: str
    opening_balance_minor: int
    bank: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., account_id: _Optional[str] = ..., opening_balance_minor: _Optional[int] = ..., bank: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("username", "bank", "account_id")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    BANK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    username: str
    bank: str
    account_id: str
    def __init__(self, username: _Optional[str] = ..., bank: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class AuthenticateRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("token", "expires_unix_ms", "username")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_unix_ms: int
    username: str
    def __init__(self, token: _Optional[str] = ..., expires_unix_ms: _Optional[int] = ..., username: _Optional[str] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("bank", "account_id")
    BANK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    bank: str
    account_id: str
    def __init__(self, bank: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("bank", "account_id", "balance_minor", "held_minor", "available_minor")
    BANK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    HELD_MINOR_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MINOR_FIELD_NUMBER: _ClassVar[int]
    bank: str
    account_id: str
    balance_minor: int
    held_minor: int
    available_minor: int
    def __init__(self, bank: _Optional[str] = ..., account_id: _Optional[str] = ..., balance_minor: _Optional[int] = ..., held_minor: _Optional[int] = ..., available_minor: _Optional[int] = ...) -> None: ...

class PayRequest(_message.Message):
    __slots__ = ("idempotency_key", "to_bank", "to_account", "amount_minor", "from_account")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TO_BANK_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    to_bank: str
    to_account: str
    amount_minor: int
    from_account: str
    def __init__(self, idempotency_key: _Optional[str] = ..., to_bank: _Optional[str] = ..., to_account: _Optional[str] = ..., amount_minor: _Optional[int] = ..., from_account: _Optional[str] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("payment_id", "from_bank", "from_account", "to_bank", "to_account", "amount_minor", "status", "failure_reason", "failure_message", "created_unix_ms", "idempotency_key", "settled")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_BANK_FIELD_NUMBER: _ClassVar[int]
    FROM_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TO_BANK_FIELD_NUMBER: _ClassVar[int]
    TO_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_minor: int
    status: PaymentStatus
    failure_reason: str
    failure_message: str
    created_unix_ms: int
    idempotency_key: str
    settled: bool
    def __init__(self, payment_id: _Optional[str] = ..., from_bank: _Optional[str] = ..., from_account: _Optional[str] = ..., to_bank: _Optional[str] = ..., to_account: _Optional[str] = ..., amount_minor: _Optional[int] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., failure_reason: _Optional[str] = ..., failure_message: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., settled: _Optional[bool] = ...) -> None: ...

class PayResponse(_message.Message):
    __slots__ = ("payment",)
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    payment: Payment
    def __init__(self, payment: _Optional[_Union[Payment, _Mapping]] = ...) -> None: ...

class GetPaymentRequest(_message.Message):
    __slots__ = ("payment_id",)
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    def __init__(self, payment_id: _Optional[str] = ...) -> None: ...

class SearchPaymentsRequest(_message.Message):
    __slots__ = ("username", "status", "counterparty", "min_amount_minor", "max_amount_minor", "since_unix_ms", "until_unix_ms", "page_size", "page_token")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNTERPARTY_FIELD_NUMBER: _ClassVar[int]
    MIN_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    MAX_AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    username: str
    status: PaymentStatus
    counterparty: str
    min_amount_minor: int
    max_amount_minor: int
    since_unix_ms: int
    until_unix_ms: int
    page_size: int
    page_token: str
    def __init__(self, username: _Optional[str] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., counterparty: _Optional[str] = ..., min_amount_minor: _Optional[int] = ..., max_amount_minor: _Optional[int] = ..., since_unix_ms: _Optional[int] = ..., until_unix_ms: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchPaymentsResponse(_message.Message):
    __slots__ = ("payments", "next_page_token")
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[Payment]
    next_page_token: str
    def __init__(self, payments: _Optional[_Iterable[_Union[Payment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class OpenAccountRequest(_message.Message):
    __slots__ = ("account_id", "opening_balance_minor", "opened_for")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    OPENING_BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    OPENED_FOR_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    opening_balance_minor: int
    opened_for: str
    def __init__(self, account_id: _Optional[str] = ..., opening_balance_minor: _Optional[int] = ..., opened_for: _Optional[str] = ...) -> None: ...

class OpenAccountResponse(_message.Message):
    __slots__ = ("bank", "account_id")
    BANK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    bank: str
    account_id: str
    def __init__(self, bank: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class BankListAccountsRequest(_message.Message):
    __slots__ = ("page_size", "start_after_account_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    start_after_account_id: str
    def __init__(self, page_size: _Optional[int] = ..., start_after_account_id: _Optional[str] = ...) -> None: ...

class BankListAccountsResponse(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ...) -> None: ...

class BankGetBalanceRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class BankGetBalanceResponse(_message.Message):
    __slots__ = ("bank", "account_id", "balance_minor", "held_minor", "available_minor")
    BANK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    HELD_MINOR_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MINOR_FIELD_NUMBER: _ClassVar[int]
    bank: str
    account_id: str
    balance_minor: int
    held_minor: int
    available_minor: int
    def __init__(self, bank: _Optional[str] = ..., account_id: _Optional[str] = ..., balance_minor: _Optional[int] = ..., held_minor: _Optional[int] = ..., available_minor: _Optional[int] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("txn_id", "leg", "account_id", "amount_minor", "coordinator", "request_id")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    leg: Leg
    account_id: str
    amount_minor: int
    coordinator: str
    request_id: str
    def __init__(self, txn_id: _Optional[str] = ..., leg: _Optional[_Union[Leg, str]] = ..., account_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., coordinator: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("vote", "reason", "message")
    VOTE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    vote: Vote
    reason: str
    message: str
    def __init__(self, vote: _Optional[_Union[Vote, str]] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("txn_id",)
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: str
    def __init__(self, state: _Optional[str] = ...) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("txn_id",)
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ...) -> None: ...

class AbortResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: str
    def __init__(self, state: _Optional[str] = ...) -> None: ...

class LegDecision(_message.Message):
    __slots__ = ("txn_id", "decision", "request_id")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    decision: Decision
    request_id: str
    def __init__(self, txn_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class LegAck(_message.Message):
    __slots__ = ("state", "error_reason", "error_message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: str
    error_reason: str
    error_message: str
    def __init__(self, state: _Optional[str] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class ExchangeRequest(_message.Message):
    __slots__ = ("prepares", "decisions")
    PREPARES_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    prepares: _containers.RepeatedCompositeFieldContainer[PrepareRequest]
    decisions: _containers.RepeatedCompositeFieldContainer[LegDecision]
    def __init__(self, prepares: _Optional[_Iterable[_Union[PrepareRequest, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[LegDecision, _Mapping]]] = ...) -> None: ...

class ExchangeResponse(_message.Message):
    __slots__ = ("votes", "acks")
    VOTES_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    votes: _containers.RepeatedCompositeFieldContainer[PrepareResponse]
    acks: _containers.RepeatedCompositeFieldContainer[LegAck]
    def __init__(self, votes: _Optional[_Iterable[_Union[PrepareResponse, _Mapping]]] = ..., acks: _Optional[_Iterable[_Union[LegAck, _Mapping]]] = ...) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("txn_id",)
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ...) -> None: ...

class GetDecisionResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("bank", "account_id", "balance_minor", "held_minor", "available_minor")
    BANK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MINOR_FIELD_NUMBER: _ClassVar[int]
    HELD_MINOR_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MINOR_FIELD_NUMBER: _ClassVar[int]
    bank: str
    account_id: str
    balance_minor: int
    held_minor: int
    available_minor: int
    def __init__(self, bank: _Optional[str] = ..., account_id: _Optional[str] = ..., balance_minor: _Optional[int] = ..., held_minor: _Optional[int] = ..., available_minor: _Optional[int] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("bank", "page_size", "page_token")
    BANK_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bank: str
    page_size: int
    page_token: str
    def __init__(self, bank: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token", "unreachable")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    next_page_token: str
    unreachable: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., unreachable: _Optional[_Iterable[str]] = ...) -> None: ...

class ListInFlightPaymentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class InFlightPayment(_message.Message):
    __slots__ = ("payment", "username", "debit_acked", "credit_acked")
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DEBIT_ACKED_FIELD_NUMBER: _ClassVar[int]
    CREDIT_ACKED_FIELD_NUMBER: _ClassVar[int]
    payment: Payment
    username: str
    debit_acked: bool
    credit_acked: bool
    def __init__(self, payment: _Optional[_Union[Payment, _Mapping]] = ..., username: _Optional[str] = ..., debit_acked: _Optional[bool] = ..., credit_acked: _Optional[bool] = ...) -> None: ...

class ListInFlightPaymentsResponse(_message.Message):
    __slots__ = ("payments", "next_page_token")
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[InFlightPayment]
    next_page_token: str
    def __init__(self, payments: _Optional[_Iterable[_Union[InFlightPayment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
