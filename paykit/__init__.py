"""paykit: a miniature payment system for learning how payments stay correct.

    from paykit import LocalCluster
    with LocalCluster() as cluster:
        client = cluster.client()
        client.register("ada", "password123", "ada-acct", "1000")
        client.authenticate("ada", "password123")
        client.pay("BankB", "recipient123", "200")

The public API loads lazily (PEP 562): `import paykit.bank.ledger` does not pull in grpc,
the client or the cluster; each name below is imported the first time it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Balance": "paykit.client.models",
    "Payment": "paykit.client.models",
    "Registration": "paykit.client.models",
    "SignIn": "paykit.client.models",
    "PaymentClient": "paykit.client.api",
    "LocalCluster": "paykit.lab.cluster",
    "PaykitError": "paykit.core.errors",
    "format_minor": "paykit.core.money",
    "parse_amount": "paykit.core.money",
}

__all__ = [
    "Balance",
    "LocalCluster",
    "PaykitError",
    "Payment",
    "PaymentClient",
    "Registration",
    "SignIn",
    "format_minor",
    "parse_amount",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'paykit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
