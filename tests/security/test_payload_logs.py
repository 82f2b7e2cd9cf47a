"""Dead letters never reach a DEBUG log through aiokafka (observability/payload_logs.py).

Found by the secret grep (test_no_secret_leaks.py, in-process): with the root logger at
DEBUG, aiokafka's producer logged each dead letter's value, ``Authorization`` and all.
"""

from __future__ import annotations

import logging

import pytest

from netscope.config import KafkaConfig
from netscope.ingest.kafka import make_producer
from netscope.observability import payload_logs

SECRET = "Bearer NSCANARYUNITTEST0000"  # must never show (the suite's secret grep knows it)
SHOWN = "Bearer premise-only-not-a-canary"


async def test_the_producers_payload_lines_are_dropped_and_nothing_else(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger(payload_logs.PRODUCER_LOGGER)
    log.removeFilter(payload_logs._FILTER)  # as before any producer was made
    log.debug("Sending (key=%s value=%s) to %s", b"k", SHOWN.encode(), "t-0")
    assert SHOWN in caplog.text, "the library does log payloads: the premise of the filter"
    caplog.clear()

    producer = make_producer(KafkaConfig(bootstrap_servers="127.0.0.1:9"))
    try:
        log.debug("Sending (key=%s value=%s) to %s", b"k", SECRET.encode(), "t-0")
        log.debug("Sending batch to %s", "t-0")
    finally:
        await producer.stop()
    assert SECRET not in caplog.text
    assert "Sending batch to t-0" in caplog.text
    payload_logs.install()
    assert log.filters.count(payload_logs._FILTER) == 1


@pytest.fixture(autouse=True)
def _restore_filter():
    yield
    payload_logs.install()
