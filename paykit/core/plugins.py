"""A class named on the command line ("package.module:Class"): the labs' pluggable parts.

`paykit bank --participant-class mylab:MyParticipant`, `paykit gateway --coordinator-class
mylab:MyCoordinator --idempotency-class mylab:MyStore` run a student's rules (the labs,
paykit/lab/labs) in place of the kit's own.
"""

from __future__ import annotations

import importlib

from paykit.core.errors import InvalidInput

DOTTED_MAX_CHARS = 200
SHOWN_CHARS = 40


def _shown(text: str) -> str:
    return repr(text[:SHOWN_CHARS] + ("..." if len(text) > SHOWN_CHARS else ""))


def load_class(dotted: str, base: type) -> type:
    """The class `dotted` names; it must subclass `base`. InvalidInput says what is wrong."""
    if len(dotted) > DOTTED_MAX_CHARS:
        raise InvalidInput(f"class path is {len(dotted)} characters; at most {DOTTED_MAX_CHARS}")
    module_name, sep, attr = dotted.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInput(f"class {_shown(dotted)} is not of the form module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error of the named module: say which, briefly
        raise InvalidInput(
            f"cannot import {_shown(module_name)}: {type(exc).__name__}: {str(exc)[:120]}"
        ) from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise InvalidInput(
            f"{_shown(dotted)} is not a subclass of {base.__module__}.{base.__name__}"
        )
    return cls
