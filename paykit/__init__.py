"""paykit: a miniature payment system for learning how payments stay correct.

    from paykit import LocalCluster
    with LocalCluster() as cluster:
        client = cluster.client()
        client.register("ada", "password123", "ada-acct", "1000")
        client.authenticate("ada", "password123")
        client.pay("BankB", "recipient123", "200")
"""

from paykit.client import Balance, Payment, PaymentClient
from paykit.cluster import LocalCluster
from paykit.errors import PaykitError
from paykit.money import format_minor, parse_amount

__all__ = ["Balance", "LocalCluster", "PaykitError", "Payment", "PaymentClient", "format_minor", "parse_amount"]
__version__ = "0.1.0"
