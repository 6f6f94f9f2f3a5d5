"""What `paykit client` exits with, so a script can tell what went wrong without reading text.

Several things may go wrong in one session: the code is the first of these that applies."""

from __future__ import annotations

from paykit.core.errors import PaykitError, Unavailable

OK = 0  # every command worked and nothing is left queued
FAILED = 1  # a command failed: an error, or a payment the gateway declined (no money moved)
USAGE = 2  # the client could not start: bad options, or no certificates where it looked
UNREACHABLE = 3  # a command failed: the gateway (or a bank behind it) unreachable, or TLS failed
QUEUED = 4  # every command worked, but payments are still queued in the outbox

# The order a session's code is chosen in: the most telling first.
PRECEDENCE = (USAGE, UNREACHABLE, FAILED, QUEUED)

EPILOG = """\
exit codes: 0 every command worked; 1 a command failed (an error, or a declined payment);
2 bad options or no certificates; 3 the gateway (or a bank behind it) could not be reached,
or the TLS handshake failed; 4 everything worked but payments are still queued (they are
sent the next time this user signs in). Errors go to stderr, replies to stdout. With --json
each command prints one JSON object on stdout, errors included ({"ok": false, "error": ...})."""


def code_of(err: PaykitError) -> int:
    """The exit code a failed command contributes."""
    return UNREACHABLE if isinstance(err, Unavailable) else FAILED


def session_code(codes: set[int]) -> int:
    """One code for a session in which commands contributed `codes`."""
    return next((c for c in PRECEDENCE if c in codes), OK)
