"""A bank: its books and 2PC participant (ledger.py), and the gRPC server around them."""
