"""The client side: PaymentClient, its session, outbox, drainer, the shell and the widget."""
