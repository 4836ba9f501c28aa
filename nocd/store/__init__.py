"""Durable state: SQLite (WAL, synchronous=FULL, one writer) with numbered migrations."""

from nocd.store.sqlite import Store, StoreError

__all__ = ["Store", "StoreError"]
