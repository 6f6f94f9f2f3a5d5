"""Files paykit ships besides its code, found the same way in a checkout and in a wheel.

    seed_csv()            the seed accounts (bank,account_id,opening_balance): paykit/data/
    proto_file()          payment.proto: next to its stubs in a wheel (setup.py copies it in at
                          build time), else proto/ of the checkout, its one source
    lessons_dir()         the lessons: paykit/lessons in a wheel (setup.py copies them in at
                          build time), else lessons/ of the checkout (an editable install)
    jupyter_config_dir()  the Jupyter settings the lessons open with (no news pop-up), the same way

A wheel installs as plain files, so each is a real path (zip imports are not supported).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

PACKAGE = Path(str(files("paykit")))
CHECKOUT = PACKAGE.parent  # only meaningful in an editable install


def seed_csv() -> Path:
    return PACKAGE / "data" / "accounts.csv"


def proto_file() -> Path:
    for path in (PACKAGE / "v1" / "payment.proto", CHECKOUT / "proto/paykit/v1/payment.proto"):
        if path.is_file():
            return path
    raise FileNotFoundError("paykit's payment.proto is missing; reinstall paykit")


def _shipped(name: str, marker: str) -> Path:
    """paykit/<name> when the wheel carries it, else <checkout>/<name>."""
    for folder in (PACKAGE / name, CHECKOUT / name):
        if (folder / marker).is_file():
            return folder
    raise FileNotFoundError(
        f"paykit's {name} folder is missing: neither {PACKAGE / name} nor {CHECKOUT / name} "
        f"has {marker}; reinstall paykit from a wheel or an sdist"
    )


def lessons_dir() -> Path:
    return _shipped("lessons", "README.md")


def jupyter_config_dir() -> Path:
    return _shipped("jupyter-config", "jupyter_server_config.json")
