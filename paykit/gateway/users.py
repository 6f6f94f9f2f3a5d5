"""Gateway users: normalised names, scrypt password hashes, lockout, expiring revocable tokens.

Nothing secret is stored in clear: passwords as salted scrypt hashes, tokens as their
SHA-256 (a token is 256 random bits, so a fast hash is enough to make the table useless
to a reader). Messages never contain a password or a token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from paykit.core.clock import now_ms
from paykit.core.db import Database
from paykit.core.errors import (
    AccountLocked,
    AlreadyExists,
    InvalidInput,
    NotAuthenticated,
    field_of,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username        TEXT PRIMARY KEY,          -- normalised: NFKC, case-folded
    bank            TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    password_salt   BLOB NOT NULL,
    password_hash   BLOB NOT NULL,             -- scrypt(password, salt)
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER NOT NULL DEFAULT 0,
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
# scrypt cost: about 30 ms a hash on one core; RFC 7914's interactive setting.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_DUMMY_SALT = secrets.token_bytes(16)
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
            f"username {raw!r} is not allowed: use letters a-z, digits, '_', '.', '-', starting "
            "with a letter or digit"
        )
    return name


@field_of("password")
def check_password_length(password: str, *, new: bool) -> None:
    if len(password) > PASSWORD_MAX_LEN:
        raise InvalidInput(f"password is too long: at most {PASSWORD_MAX_LEN} characters")
    if new and len(password) < PASSWORD_MIN_LEN:
        raise InvalidInput(f"password is too short: at least {PASSWORD_MIN_LEN} characters")


def hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20
    )


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
        self, db: Database, *, token_ttl_s: float, lockout_failures: int, lockout_s: float
    ) -> None:
        self.db = db
        self.token_ttl_ms = int(token_ttl_s * 1000)
        self.lockout_failures = lockout_failures
        self.lockout_ms = int(lockout_s * 1000)
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

    def create(self, username: str, password: str, bank: str, account_id: str) -> User:
        salt = secrets.token_bytes(16)
        digest = hash_password(password, salt)
        try:
            with self.db.write() as conn:
                conn.execute(
                    "INSERT INTO users (username, bank, account_id, password_salt, password_hash, "
                    "created_unix_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (username, bank, account_id, salt, digest, now_ms()),
                )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(
                f"user {username} or account {bank}/{account_id} is already registered"
            ) from exc
        return User(username, bank, account_id)

    def authenticate(self, raw_username: str, password: str) -> Session:
        check_password_length(password, new=False)
        try:
            username = normalise_username(raw_username)
        except InvalidInput:
            raise NotAuthenticated(BAD_LOGIN) from None
        row = (
            self.db.read().execute("SELECT * FROM users WHERE username = ?", (username,)).fetchone()
        )
        if row is None:
            hash_password(password, _DUMMY_SALT)  # same work as a real check: no timing oracle
            raise NotAuthenticated(BAD_LOGIN)
        ts = now_ms()
        if row["locked_until_ms"] > ts:
            wait_s = (row["locked_until_ms"] - ts + 999) // 1000
            raise AccountLocked(
                f"too many failed sign-ins for {username}: locked, try again in {wait_s} s"
            )
        if not hmac.compare_digest(
            hash_password(password, row["password_salt"]), row["password_hash"]
        ):
            self._record_failure(username)
            raise NotAuthenticated(BAD_LOGIN)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = ts + self.token_ttl_ms
        with self.db.write() as conn:
            conn.execute("UPDATE users SET failed_logins = 0 WHERE username = ?", (username,))
            conn.execute("DELETE FROM sessions WHERE expires_unix_ms < ?", (ts,))
            conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, 0)", (hash_token(token), username, expires)
            )
        return Session(token, username, expires)

    def _record_failure(self, username: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                "UPDATE users SET failed_logins = failed_logins + 1 WHERE username = ?", (username,)
            )
            conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until_ms = ? WHERE username = ? AND "
                "failed_logins >= ?",
                (now_ms() + self.lockout_ms, username, self.lockout_failures),
            )

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
