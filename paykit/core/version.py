"""The version every `paykit ... --version` prints: the installed distribution's, from its
metadata (importlib.metadata), so a wheel and its command can never disagree."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "paykit"


def version() -> str:
    """The installed version; run from a source tree that was never installed, the package's own
    __version__, marked so (metadata is the truth, the constant only a fallback)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        import paykit

        return f"{paykit.__version__} (not installed)"
