"""One module per HTTP client library, each a ``Transport`` (outbound/transport.py)."""
