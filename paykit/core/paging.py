"""Page sizes and page tokens in the manner of Google's AIP-158, for List and Search methods.

A page token is opaque to callers: base64url of a small JSON array holding a format version, a
fingerprint of the query it belongs to and the keyset position of the last item of the page
(e.g. its creation time and id). The next page starts strictly after that position, so paging
never skips or repeats an item however many are added meanwhile. A token is refused when it is
not one of ours or when it comes from another query (another filter, another user): the
fingerprint says which query it was made for. It grants nothing: every page is still filtered
by who asks, so a made-up token can at worst start a page somewhere else in the caller's own
list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from paykit.core.errors import InvalidInput

TOKEN_VERSION = 1
FINGERPRINT_CHARS = 16  # hex characters of SHA-256 kept: a check of intent, not a secret
POSITION_TEXT_MAX_CHARS = 64


def page_size(requested: int, *, default: int, maximum: int, field: str = "page_size") -> int:
    """AIP-158: 0 means the default, more than the maximum is read as the maximum, and a
    negative size is an error."""
    if requested < 0:
        raise InvalidInput(
            f"{field} must not be negative (0 means {default})", metadata={"field": field}
        )
    return min(requested or default, maximum)


def fingerprint(*query: object) -> str:
    """What identifies a query for its tokens: its method and its filter fields, in order."""
    text = json.dumps([str(q) for q in query], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_CHARS]


def encode_token(query: str, position: tuple[int | str, ...]) -> str:
    """The next_page_token after the item at `position`, for the query `query` (fingerprint)."""
    raw = json.dumps([TOKEN_VERSION, query, *position], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _refused(why: str) -> InvalidInput:
    return InvalidInput(f"page_token {why}", metadata={"field": "page_token"})


def decode_token(token: str, query: str, kinds: tuple[type, ...]) -> tuple[int | str, ...] | None:
    """The position a page_token holds (None for an empty token, the first page). `kinds` are
    the types of the position's items, e.g. (int, str). InvalidInput for anything else."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        items = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        items = None
    if (
        not isinstance(items, list)
        or len(items) != 2 + len(kinds)
        or items[0] != TOKEN_VERSION
        or not isinstance(items[1], str)
        or not all(_fits(item, kind) for item, kind in zip(items[2:], kinds, strict=True))
    ):
        raise _refused(
            "is not one this gateway made: pass the next_page_token of the previous reply "
            "unchanged, or none for the first page"
        )
    if items[1] != query:
        raise _refused(
            "belongs to another query: keep the same filter from page to page (only page_size "
            "may change), or start again without a token"
        )
    return tuple(items[2:])


def _fits(item: object, kind: type) -> bool:
    if kind is int:
        return isinstance(item, int) and not isinstance(item, bool) and abs(item) < 1 << 63
    return isinstance(item, str) and len(item) <= POSITION_TEXT_MAX_CHARS
