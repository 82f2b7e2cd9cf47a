"""Keep Kafka message payloads out of the logs that libraries write at DEBUG.

aiokafka's producer logs every record it sends at DEBUG, value and all ("Sending (key=...
value=...)"). NetScope's producer sends dead letters: the original message, with whatever
``Authorization`` header or ``?token=`` it carried. ``netscope run`` caps aiokafka at
WARNING (observability/logging.py), but a Service embedded elsewhere (a test, a host
program) may run its root logger at DEBUG, and then every dead letter would reach the log.
This filter drops exactly those records; aiokafka's other DEBUG lines stay.
"""

from __future__ import annotations

import logging

PRODUCER_LOGGER = "aiokafka.producer.producer"
_SENDING = "Sending (key=%s value=%s) to %s"


class _DropPayloads(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != _SENDING


_FILTER = _DropPayloads()


def install() -> None:
    """Idempotent: called wherever NetScope makes a producer."""
    logger = logging.getLogger(PRODUCER_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
