"""The idempotency ledger: claim a key before calling an upstream, settle it after.

The vocabulary and the protocol are in ``model``; the backends (``sqlite``, ``postgres``)
are imported by whoever chooses one, so importing the package pulls in no database driver.
"""
