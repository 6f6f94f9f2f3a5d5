"""What every role shares: money, errors, config, SQLite, event log, failpoints, time, 2PC words."""
