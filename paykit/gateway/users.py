"""Gateway users: normalised names, argon2id password hashes, throttled sign-in, expiring
revocable tokens.

Nothing secret is stored in clear: passwords as argon2id hashes (OWASP's parameters; older
scrypt rows are still checked and upgraded at the next sign-in), tokens as their SHA-256 (a
token is 256 random bits, so a fast hash is enough to make the table useless to a reader).
Messages never contain a password or a token. Sign-in answers the same for a name that exists
and one that does not: same message, same throttling (paykit.gateway.throttle), same work.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from paykit.core.clock import now_ms
from paykit.core.db import Database
from paykit.core.errors import AlreadyExists, InvalidInput, NotAuthenticated, field_of
from paykit.core.ids import prefix
from paykit.gateway.throttle import SignInThrottle

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username        TEXT PRIMARY KEY,          -- normalised: NFKC, case-folded
    bank            TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    password_salt   BLOB NOT NULL,             -- empty for argon2id (its salt is in the hash)
    password_hash   BLOB NOT NULL,             -- argon2id encoded hash (older rows: scrypt)
    created_unix_ms INTEGER NOT NULL,
    UNIQUE (bank, account_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256    TEXT PRIMARY KEY,
    username        TEXT NOT NULL,
    expires_unix_ms INTEGER NOT NULL,
    revoked         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_unix_ms);
"""

USERNAME_MAX_LEN = 32
PASSWORD_MIN_LEN = 8
PASSWORD_MAX_LEN = 128  # refused before hashing, so a huge password costs nothing
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# argon2id with OWASP's first recommended setting (19 MiB, 2 passes, 1 lane): about 25 ms a
# hash on one core here, half of what the old scrypt (N=2^14) cost; scrypt at OWASP's N=2^17
# would cost 8 times that and 128 MiB a hash (docs/security.md has the figures).
ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_LANES = 2, 19 * 1024, 1
_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_LANES
)
# Hashes running at once, whatever runs them: memory stays under HASHES_AT_ONCE x 19 MiB.
HASHES_AT_ONCE = 2
_hashing = threading.BoundedSemaphore(HASHES_AT_ONCE)
LEGACY_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "maxmem": 64 << 20}  # rows made before argon2id
TOKEN_PREFIX = "pk_"
# Valid sessions remembered in memory, so a call does not cost two SQLite lookups. Bounded (least
# recently used go first); expiry is checked on every call; logout forgets the token at once; and an
# entry is re-read from SQLite after TOKEN_CACHE_S, in case the table was changed from outside.
TOKEN_CACHE_MAX = 10_000
TOKEN_CACHE_S = 5.0
BAD_LOGIN = "wrong username or password"


@field_of("username")  # the request field it checks: clients get it as a BadRequest field violation
def normalise_username(raw: str) -> str:
    """NFKC + case-fold, then ASCII letters, digits, '_', '.', '-' only (no look-alikes)."""
    if len(raw) > USERNAME_MAX_LEN * 4:
        raise InvalidInput(f"username is too long: at most {USERNAME_MAX_LEN} characters")
    name = unicodedata.normalize("NFKC", raw).casefold().strip()
    if not name or len(name) > USERNAME_MAX_LEN:
        raise InvalidInput(f"username must have 1 to {USERNAME_MAX_LEN} characters")
    if not _USERNAME_RE.match(name):
        raise InvalidInput(
            f"username {prefix(raw)!r} is not allowed: use letters a-z, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


@field_of("password")
def check_password_length(password: str, *, new: bool) -> None:
    if len(password) > PASSWORD_MAX_LEN:
        raise InvalidInput(f"password is too long: at most {PASSWORD_MAX_LEN} characters")
    if new and len(password) < PASSWORD_MIN_LEN:
        raise InvalidInput(f"password is too short: at least {PASSWORD_MIN_LEN} characters")


def hash_password(password: str) -> bytes:
    """A new argon2id hash of `password` (its own random salt inside)."""
    with _hashing:
        return _HASHER.hash(password).encode()


@functools.cache
def _dummy_hash() -> bytes:
    # What an unknown name's sign-in is checked against: the same work as a real check.
    return hash_password(secrets.token_urlsafe(16))


def password_matches(stored_salt: bytes, stored_hash: bytes, password: str) -> bool:
    """Checks a password against a stored hash (argon2id, or a legacy salted scrypt)."""
    with _hashing:
        if not stored_salt:
            try:
                return _HASHER.verify(stored_hash, password)
            except (VerificationError, InvalidHashError):
                return False
        digest = hashlib.scrypt(password.encode(), salt=stored_salt, **LEGACY_SCRYPT)
        return hmac.compare_digest(digest, stored_hash)


def needs_new_hash(stored_salt: bytes, stored_hash: bytes) -> bool:
    return bool(stored_salt) or _HASHER.check_needs_rehash(stored_hash.decode())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    username: str
    bank: str
    account_id: str


@dataclass(frozen=True)
class Session:
    token: str
    username: str
    expires_unix_ms: int


class Users:
    def __init__(
        self, db: Database, *, token_ttl_s: float, throttle: SignInThrottle | None = None
    ) -> None:
        self.db = db
        self.token_ttl_ms = int(token_ttl_s * 1000)
        self.throttle = throttle or SignInThrottle()
        # sha256 -> user, expiry, re-read at
        self._tokens: OrderedDict[str, tuple[User, int, int]] = OrderedDict()
        self._tokens_lock = threading.Lock()
        self._logouts = 0  # a lookup that overlapped a logout does not cache what it read

    def get(self, username: str) -> User | None:
        row = (
            self.db.read()
            .execute("SELECT username, bank, account_id FROM users WHERE username = ?", (username,))
            .fetchone()
        )
        return User(row["username"], row["bank"], row["account_id"]) if row else None

    def check_new(self, raw_username: str, password: str) -> str:
        """Validates a registration before anything is created; returns the normalised name."""
        username = normalise_username(raw_username)
        check_password_length(password, new=True)
        if self.get(username) is not None:
            raise AlreadyExists(f"user {username} already exists; choose another name or sign in")
        return username

    def create(self, username: str, password_hash: bytes, bank: str, account_id: str) -> User:
        """Stores a user whose password was hashed with hash_password (outside any lock)."""
        try:
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO users (username, bank, account_id, password_salt, password_hash, "
                    "created_unix_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (username, bank, account_id, b"", password_hash, now_ms()),
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(
                f"user {username} or account {bank}/{account_id} is already registered"
            ) from exc
        return User(username, bank, account_id)

    def authenticate(self, raw_username: str, password: str, *, peer: str = "") -> Session:
        """Signs in; `peer` is the caller's address (the throttle counts per name and address).
        The attempt is counted before the password is hashed; a wrong password and an unknown
        name get the same answer and cost the same (one hash, no write)."""
        check_password_length(password, new=False)
        try:
            username = normalise_username(raw_username)
        except InvalidInput:
            raise NotAuthenticated(BAD_LOGIN) from None
        attempt = self.throttle.begin(username, peer)
        row = (
            self.db.read()
            .execute(
                "SELECT password_salt, password_hash FROM users WHERE username = ?", (username,)
            )
            .fetchone()
        )
        salt, stored = (row[0], row[1]) if row is not None else (b"", _dummy_hash())
        if not password_matches(salt, stored, password) or row is None:
            raise NotAuthenticated(BAD_LOGIN)
        self.throttle.succeeded(attempt)
        return self._new_session(username, password, needs_new_hash(salt, stored))

    def _new_session(self, username: str, password: str, rehash: bool) -> Session:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        ts = now_ms()
        expires = ts + self.token_ttl_ms
        upgraded = hash_password(password) if rehash else None
        with self.db.write() as conn:
            if upgraded is not None:
                conn.execute(
                    "UPDATE users SET password_salt = x'', password_hash = ? WHERE username = ?",
                    (upgraded, username),
                )
            conn.execute("DELETE FROM sessions WHERE expires_unix_ms < ?", (ts,))
            conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, 0)", (hash_token(token), username, expires)
            )
        return Session(token, username, expires)

    def user_for_token(self, token: str) -> User:
        """The user a bearer token belongs to; NotAuthenticated says why not."""
        if not token:
            raise NotAuthenticated("not signed in: this call needs a token")
        digest, ts = hash_token(token), now_ms()
        with self._tokens_lock:
            cached = self._tokens.get(digest)
            if cached is not None and cached[1] > ts and cached[2] > ts:
                self._tokens.move_to_end(digest)
                return cached[0]
        return self._user_for_digest(digest)

    def _user_for_digest(self, digest: str) -> User:
        logouts = self._logouts
        row = (
            self.db.read()
            .execute(
                "SELECT username, expires_unix_ms, revoked FROM sessions WHERE token_sha256 = ?",
                (digest,),
            )
            .fetchone()
        )
        if row is None:
            raise NotAuthenticated(
                "token not recognised (forged, tampered or from another gateway); sign in again"
            )
        if row["revoked"]:
            raise NotAuthenticated("token was revoked by logout; sign in again")
        if row["expires_unix_ms"] <= now_ms():
            raise NotAuthenticated("token expired; sign in again")
        user = self.get(row["username"])
        if user is None:
            raise NotAuthenticated("token's user no longer exists")
        with self._tokens_lock:
            if logouts == self._logouts:
                self._tokens[digest] = (
                    user,
                    row["expires_unix_ms"],
                    now_ms() + int(TOKEN_CACHE_S * 1000),
                )
                self._tokens.move_to_end(digest)
                if len(self._tokens) > TOKEN_CACHE_MAX:
                    self._tokens.popitem(last=False)
        return user

    def logout(self, token: str) -> None:
        digest = hash_token(token)
        with self.db.write() as conn:
            conn.execute("UPDATE sessions SET revoked = 1 WHERE token_sha256 = ?", (digest,))
        with self._tokens_lock:
            self._logouts += 1
            self._tokens.pop(digest, None)
