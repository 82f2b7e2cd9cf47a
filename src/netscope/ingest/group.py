"""A consumer's LeaveGroup, sent only when the broker can take it, and a stop that does not
wait on a join.

Found by the fault schedule (tests/integration/test_leader_stop_rebalance.py): tansu 0.6, the
development broker, handles a LeaveGroup from the group's leader that arrives while the group
rebalances (its "Forming" state) by removing the member but keeping the group's ``leader``
pointing at it. While the group forms only the leader may complete a SyncGroup, and a member
that left is no longer in the member list, so the session-timeout eviction that clears a dead
leader never runs: no generation forms again and no member is assigned a partition for as
long as the broker runs. A leader that goes silent instead is evicted by tansu after the
session timeout, and the group recovers.

The opposite holds on noida 0.2.3 (devservices MEMBER_EXPIRY): it never expires a member that
goes silent, so a leader that does not leave blocks that group for good, while noida takes a
LeaveGroup in any state. Apache Kafka takes both. So a member that may be the leader asks the
coordinator to describe the group as it closes, and stays silent (its partitions move after
``kafka.session_timeout_s``, as after a crash) when the answer is tansu's: tansu reports a
classic group in states of its own (``Assigning``, ``Unknown`` while it forms) and names no
protocol for a formed one, where Kafka and noida report ``PreparingRebalance`` or
``CompletingRebalance`` and name the assignor (``roundrobin``). Every other member leaves,
and so does any member whose DescribeGroups fails. At-least-once is untouched either way: the
stop commits what is durable before the consumer closes and the rest is redelivered.

A first version skipped the LeaveGroup only while tansu's group was forming; the CI run of
``sigterm_in_stages`` found the race it left (a rebalance starting between the DescribeGroups
answer and the LeaveGroup wedged the group, 681 messages never processed): on tansu, a member
that may lead never sends LeaveGroup now.

Who may be the leader: a member whose assignor ran (aiokafka runs it only on the member the
broker named leader; tansu keeps a leader for as long as it stays in the group, so once led it
counts until the stop), and a member whose join the stop cut short or that has a member id but
no generation yet, since tansu may have named it leader in the answer it never read.

A stop during a join (:func:`stop_consumer`), found by the long noida fault run: aiokafka's
close first waits for the coordination task, which sits in a JoinGroup until the broker
completes the rebalance (the rebalance timeout on Kafka; on noida, for as long as a member
it waits for never rejoins), so the stop's bound cut the close before its LeaveGroup. The
member stayed in the group, and noida, which never expires one, waited for it in every later
rebalance: no partition was assigned again. Here the join in flight gets ``JOIN_WAIT_S``,
then is cancelled, and the member leaves as above, including a first join that has a member
id but no generation yet (aiokafka sends LeaveGroup only with a generation). The leave goes
on a new connection: the broker would answer it only after the JoinGroup it still holds.

Both hook into aiokafka's ``GroupCoordinator`` (``_maybe_leave_group``, ``close``; aiokafka
0.12-0.14); where those are not as known here, the consumer closes as aiokafka does, with a
warning.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from typing import Any

from aiokafka.client import ConnectionGroup
from aiokafka.conn import CloseReason
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.protocol.group import LeaveGroupRequest

try:  # newer aiokafka: the request is built in the version the broker supports
    from aiokafka.protocol.admin import DescribeGroupsRequest
except ImportError:  # older aiokafka: version 0, which every broker here answers
    from aiokafka.protocol.admin import DescribeGroupsRequest_v0 as DescribeGroupsRequest

log = logging.getLogger(__name__)

DESCRIBE_TIMEOUT_S = 1.0
LEAVE_TIMEOUT_S = 1.0
# How long a stop lets a join in flight finish before cutting it short (inside the stop's
# 5 s bound for the consumer close: the LeaveGroup must fit after it).
JOIN_WAIT_S = 2.0
# The states tansu 0.6 gives a classic group that no Kafka-compatible coordinator here uses
# for one (Kafka's own: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).
TANSU_STATES = frozenset({"Unknown", "Assigning"})

# Coordinators whose join the stop cancelled (their member may have been named leader).
_cut_short: weakref.WeakSet[Any] = weakref.WeakSet()


def keeps_departed_leader(state: str, protocol: str) -> bool:
    """Whether a DescribeGroups answer is tansu's, whose group a leader's LeaveGroup can
    wedge: a state of its own, or a formed group with no protocol named."""
    return state in TANSU_STATES or (state == "Stable" and not protocol)


class LeaderTrackingAssignor(RoundRobinPartitionAssignor):  # type: ignore[misc]
    """aiokafka's default assignor (round robin), remembering whether it ever ran here."""

    def __init__(self) -> None:
        self.led = False

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        self.led = True  # aiokafka assigns only on the leader the broker elected
        return super().assign(cluster, members)  # type: ignore[no-any-return]


def leave_only_when_safe(consumer: Any, assignor: LeaderTrackingAssignor) -> None:
    """After ``consumer.start()``: a member that may lead sends no LeaveGroup to tansu."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:  # no group (or a stand-in consumer): nothing to leave
        return
    leave = getattr(coordinator, "_maybe_leave_group", None)
    if leave is None or not hasattr(coordinator, "_send_req"):
        log.warning(
            "aiokafka's consumer has no _maybe_leave_group: the group leader will send "
            "LeaveGroup on close even on tansu (which can wedge the group)"
        )
        return

    async def describe() -> tuple[str, str] | None:
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
                return str(entry["state"]), str(entry["protocol"])
        return None

    async def leave_unless_unsafe() -> None:
        first_join = coordinator.generation <= 0 and bool(coordinator.member_id)
        cut = coordinator in _cut_short
        if assignor.led or first_join or cut:
            described = await describe()
            if described is not None and keeps_departed_leader(*described):
                log.info(
                    "not sending LeaveGroup: this member %s, and tansu (group state %s) would "
                    "keep a departed leader; it leaves by session timeout",
                    "led the group" if assignor.led else "may have been named leader",
                    described[0],
                )
                coordinator.reset_generation()
                return
        if first_join:  # aiokafka would not leave without a generation
            await _leave_as(coordinator, coordinator.member_id)
            coordinator.reset_generation()
            return
        await leave()

    coordinator._maybe_leave_group = leave_unless_unsafe


async def _leave_as(coordinator: Any, member_id: str) -> None:
    try:
        async with asyncio.timeout(LEAVE_TIMEOUT_S):
            await coordinator._send_req(LeaveGroupRequest(coordinator.group_id, member_id))
    except Exception as exc:  # best effort, as aiokafka's own LeaveGroup
        log.info("LeaveGroup for member %s (mid-join) failed: %s", member_id, exc)
    else:
        log.info("left the group mid-join (member %s)", member_id)


async def stop_consumer(consumer: Any) -> None:
    """``consumer.stop()``, whose group close does not wait for a join in flight for more
    than ``JOIN_WAIT_S``: it is cancelled and the member leaves (the module docstring)."""
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_coordination_task", None)
    closing = getattr(coordinator, "_closing", None)
    steps = ("_stop_heartbeat_task", "_stop_commit_offsets_refresh_task", "_maybe_leave_group")
    if task is None or closing is None or not all(hasattr(coordinator, n) for n in steps):
        await consumer.stop()  # no group, or an aiokafka whose close is not the one known here
        return
    if not closing.done():
        # aiokafka's GroupCoordinator.close, with a bound on the wait for the coordination task.
        closing.set_result(None)
        if not task.done():
            await asyncio.wait({task}, timeout=JOIN_WAIT_S)
        if not task.done():
            log.info("stop: the join in flight did not end within %.1fs: cut short", JOIN_WAIT_S)
            _cut_short.add(coordinator)
            task.cancel()
            await asyncio.wait({task})
            _renew_coordinator_connection(coordinator)
        await coordinator._stop_heartbeat_task()
        await coordinator._stop_commit_offsets_refresh_task()
        await coordinator._maybe_leave_group()
    await consumer.stop()  # the coordinator is closed: the fetcher and the client close


def _renew_coordinator_connection(coordinator: Any) -> None:
    """Close the connection that carried the cancelled JoinGroup: a broker answers in order
    on a connection and holds that answer until the rebalance ends (noida: for good), so the
    DescribeGroups and LeaveGroup that follow would wait behind it. The next request opens a
    new one."""
    conns = getattr(getattr(coordinator, "_client", None), "_conns", None)
    if not isinstance(conns, dict):
        return
    conn = conns.get((coordinator.coordinator_id, ConnectionGroup.COORDINATION))
    if conn is not None:
        conn.close(reason=CloseReason.SHUTDOWN)
