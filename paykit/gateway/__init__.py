"""The gateway: users, payments, idempotency keys and the 2PC coordinator, and its gRPC servers."""
