"""gRPC plumbing every process shares: channels, TLS, interceptors, serving, PKI, statuses."""
