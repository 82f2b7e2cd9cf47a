"""Topic creation that behaves the same on both dev brokers.

Why a module: tansu auto-creates topics with 4 partitions and has no CreatePartitions, so
"already exists" is an expected answer there; and CreateTopics returning is not proof the
topic is usable, so we wait until metadata lists it with its partitions.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 4,
    *,
    timeout_s: float = 15.0,
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        try:
            response = await admin.create_topics(
                [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
            )
        except TopicAlreadyExistsError:
            response = None
        _raise_on_error(response, name)
        deadline = time.monotonic() + timeout_s
        seen = -1
        while time.monotonic() < deadline:
            described = await admin.describe_topics([name])
            for topic in described:
                if topic.get("topic") == name and topic.get("error_code", 0) == 0:
                    seen = len(topic.get("partitions", []))
            if seen >= partitions:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(
            f"topic {name!r} on {bootstrap}: metadata shows {seen} partitions, "
            f"wanted {partitions}, after {timeout_s} s"
        )
    finally:
        await admin.close()


def _raise_on_error(response: object, name: str) -> None:
    # CreateTopics reports per-topic errors in the response body rather than raising.
    errors = getattr(response, "topic_errors", None) or getattr(response, "topics", None) or []
    for entry in errors:
        topic, code = entry[0], entry[1]
        if topic == name and code not in (0, TopicAlreadyExistsError.errno):
            message = entry[2] if len(entry) > 2 else ""
            raise RuntimeError(f"create topic {name!r} failed: error {code} {message}")
