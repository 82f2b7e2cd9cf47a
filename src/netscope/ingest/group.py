"""The group leader's LeaveGroup, sent only when the broker can take it.

Found by the fault schedule (tests/integration/test_leader_stop_rebalance.py): tansu 0.6, the
development broker, handles a LeaveGroup that arrives while the group rebalances (its
"Forming" state, which its DescribeGroups reports as ``Unknown``) by removing the member but
keeping the group's ``leader`` pointing at it. While the group forms only the leader may
complete a SyncGroup, and a member that left is no longer in the member list, so the
session-timeout eviction that clears a dead leader never runs: no generation forms again and
no member is assigned a partition for as long as the broker runs. A leader that goes silent
instead is evicted by tansu after the session timeout, and the group recovers.

The opposite holds on noida 0.2.3 (devservices MEMBER_EXPIRY): it never expires a member that
goes silent, so a leader that does not leave blocks that group for good, while noida takes a
LeaveGroup in any state. Apache Kafka takes both. So a member that has led the group asks the
coordinator for the group's state as it closes: it sends LeaveGroup unless the state is
``Unknown`` (no Kafka state is: Kafka and noida name a rebalance PreparingRebalance or
CompletingRebalance), and then closes silently, its partitions moving after
``kafka.session_timeout_s``, as after a crash. A member that never led always leaves, and so
does a leader whose DescribeGroups fails. At-least-once is untouched either way: the stop
commits what is durable before the consumer closes and the rest is redelivered.

Left open: a rebalance that starts between the DescribeGroups answer and the LeaveGroup (one
round trip) still wedges a tansu group.

aiokafka runs the partition assignor only on the member the broker named leader, so the
assignor here records that; once this member has led it is taken to lead until it stops
(tansu keeps a leader for as long as it stays in the group). The LeaveGroup is sent from the
coordinator's ``_maybe_leave_group`` (aiokafka 0.12-0.14), wrapped on the started consumer;
without that hook the consumer closes as aiokafka does, with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

try:  # newer aiokafka: the request is built in the version the broker supports
    from aiokafka.protocol.admin import DescribeGroupsRequest
except ImportError:  # older aiokafka: version 0, which every broker here answers
    from aiokafka.protocol.admin import DescribeGroupsRequest_v0 as DescribeGroupsRequest

log = logging.getLogger(__name__)

DESCRIBE_TIMEOUT_S = 1.0
# What tansu's DescribeGroups says of a group that forms with a leader named.
LEADER_LEAVE_UNSAFE_STATES = frozenset({"Unknown"})


class LeaderTrackingAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """aiokafka's default assignor (round robin), remembering whether it ever ran here."""

    def __init__(self) -> None:
        self.led = False

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        self.led = True  # aiokafka assigns only on the leader the broker elected
        return super().assign(cluster, members)  # type: ignore[no-any-return]


def leave_only_when_safe(consumer: Any, assignor: LeaderTrackingAssignor) -> None:
    """After ``consumer.start()``: a leader's close skips LeaveGroup while tansu's group forms."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:  # no group (or a stand-in consumer): nothing to leave
        return
    leave = getattr(coordinator, "_maybe_leave_group", None)
    if leave is None or not hasattr(coordinator, "_send_req"):
        log.warning(
            "aiokafka's consumer has no _maybe_leave_group: the group leader will send "
            "LeaveGroup on close even while tansu rebalances (which wedges the group)"
        )
        return

    async def group_state() -> str | None:
        try:
            async with asyncio.timeout(DESCRIBE_TIMEOUT_S):
                response = await coordinator._send_req(
                    DescribeGroupsRequest([coordinator.group_id])
                )
        except Exception as exc:
            log.info("DescribeGroups before LeaveGroup failed (%s): leaving", exc)
            return None
        for entry in response.to_object()["groups"]:
            if entry["group"] == coordinator.group_id and not entry["error_code"]:
                return str(entry["state"])
        return None

    async def leave_unless_unsafe() -> None:
        if assignor.led and coordinator.generation > 0:
            state = await group_state()
            if state in LEADER_LEAVE_UNSAFE_STATES:
                log.info(
                    "not sending LeaveGroup: this member led the group, which is rebalancing "
                    "(state %s); it leaves by session timeout",
                    state,
                )
                coordinator.reset_generation()
                return
        await leave()

    coordinator._maybe_leave_group = leave_unless_unsafe
