"""The error every notifier and ticket sink raises, classified as retryable or not."""

from __future__ import annotations


class DeliveryError(Exception):
    """A send failed; `retryable` tells the outbox worker whether to try again later.

    The reason must never contain secrets (tokens, passwords): it is logged and stored.
    """

    def __init__(self, reason: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
