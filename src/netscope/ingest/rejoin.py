"""A member told that its generation is stale rejoins under the member id it has.

Found by the long noida fault run (docs/reliability.md, finding 9): noida 0.2.3 starts a new
generation as soon as a member joins, so the members already in the group get
``ILLEGAL_GENERATION`` for their next OffsetCommit or Heartbeat (Kafka answers
``REBALANCE_IN_PROGRESS`` while a rebalance waits for them). aiokafka 0.14 answers
``ILLEGAL_GENERATION`` by forgetting its member id, so it rejoins as a new member: noida then
waits the session timeout for the old one, completes the join with the leader still the old,
departed member id, and no member ever receives an assignment again (each rejoin gets the same
generation, no leader runs the assignor). Every later instance of the group stays idle.

``ILLEGAL_GENERATION`` says the coordinator knows the member id (it answers
``UNKNOWN_MEMBER_ID`` when it does not), so rejoining under it is what the protocol expects
and what a Kafka broker takes too: it completes the rebalance without waiting for a member
that no longer exists. Here, after a response to this coordinator whose errors are
``ILLEGAL_GENERATION`` (and no ``UNKNOWN_MEMBER_ID``), aiokafka's ``reset_generation``
resets the generation and asks for a rejoin, keeping the member id. The flag lives in a
context variable set by the task that received the response: aiokafka handles each response
in the task that sent the request, with no await in between, so a reset in another task (a
LeaveGroup, an ``UNKNOWN_MEMBER_ID`` elsewhere) forgets the member id as before. The flag
holds until that task's next response.

It hooks aiokafka's ``GroupCoordinator`` (``_send_req``, ``reset_generation``; aiokafka
0.12-0.14); where those are not as known here it logs a warning and changes nothing.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
NO_GENERATION = -1  # aiokafka's OffsetCommitRequest.DEFAULT_GENERATION_ID

# True while the current task handles a response that says "stale generation, known member".
_stale_generation: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "netscope_stale_generation", default=False
)


def error_codes(answer: Any) -> Iterator[int]:
    """Every ``error_code`` in a decoded response (``Response.to_object()``), at any depth:
    OffsetCommit has one per partition, Heartbeat and SyncGroup one at the top."""
    if isinstance(answer, dict):
        for key, value in answer.items():
            if key == "error_code" and isinstance(value, int):
                yield value
            else:
                yield from error_codes(value)
    elif isinstance(answer, list | tuple):
        for value in answer:
            yield from error_codes(value)


def only_stale_generation(answer: Any) -> bool:
    """Whether a response says the generation is stale but the member id is known."""
    codes = set(error_codes(answer))
    return ILLEGAL_GENERATION in codes and UNKNOWN_MEMBER_ID not in codes


def rejoin_keeping_member_id(consumer: Any) -> None:
    """After ``consumer.start()``: a stale generation no longer costs the member its id."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:  # no group (or a stand-in consumer)
        return
    send = getattr(coordinator, "_send_req", None)
    reset = getattr(coordinator, "reset_generation", None)
    if send is None or reset is None or not hasattr(coordinator, "request_rejoin"):
        log.warning(
            "aiokafka's GroupCoordinator is not the one known here: a stale generation will "
            "make this member rejoin as a new one (which wedges a noida group)"
        )
        return

    async def send_req(request: Any) -> Any:
        response = await send(request)
        try:
            stale = only_stale_generation(response.to_object())
        except Exception:  # a response this module cannot read: aiokafka's behaviour
            stale = False
        _stale_generation.set(stale)
        return response

    def reset_generation() -> None:
        if not _stale_generation.get():
            reset()
            return
        if coordinator.generation != NO_GENERATION:  # once per response, not per partition
            log.info(
                "stale generation %s: rejoining as member %s",
                coordinator.generation,
                coordinator.member_id,
            )
        coordinator.generation = NO_GENERATION
        coordinator.request_rejoin()

    coordinator._send_req = send_req
    coordinator.reset_generation = reset_generation
