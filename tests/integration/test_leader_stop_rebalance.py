"""The group leader stopped while the group rebalances: the group assigns partitions again.

Found by the fault schedule (alone-sigterm_in_stages): from ~16 s into the run no member was
ever assigned a partition again (every instance restarted later logged ``revoked [] (now 0)``,
``netscope ready``, then nothing, for the 180 s settle phase). Cause, in tansu 0.6's group
coordinator: a LeaveGroup that arrives while the group is rebalancing (its Forming state)
removes the member but keeps ``leader`` pointing at it. Only the leader may complete a
SyncGroup while Forming, and a departed member is not in the member list, so the session
timeout that clears a dead leader never fires: no generation forms again for as long as the
broker runs (seen stuck for 40 s and more with a 6 s session; noida recovers in ~1 s). A
leader that goes without a LeaveGroup is evicted after the session timeout and the group
recovers, so NetScope's leader sends none to tansu (ingest/group.py; at first it skipped the
LeaveGroup only while the group formed, which left a race the CI fault run then hit).

Here ``netscope run`` is alone in a fresh group (so it is the leader, with every partition),
a plain aiokafka consumer joins (tansu turns the group Forming at its first JoinGroup), and
the instance gets SIGTERM while the join is open. Its stop reaches the consumer close within
a few hundred milliseconds, usually before its next heartbeat (every 1.5 s) has told it of
the rebalance, so before the fix its LeaveGroup landed in the Forming group. Two delays, two
groups, side by side (2 cores). On noida too, which never expires a member that goes silent
(devservices MEMBER_EXPIRY): there the leader must keep sending LeaveGroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from tests.harness import wait_for
from tests.integration.test_sigterm_join import write_config

DELAYS_S = (0.0, 0.3)  # SIGTERM this long after the joiner's first JoinGroup reached tansu
PARTITIONS = 4
SESSION_MS = 6000  # write_config's session_timeout_s
RECOVER_WITHIN_S = 30.0  # tansu, fixed: the leader's session (6 s) + a held join (3 s) + slack


async def _members(admin: AIOKafkaAdminClient, group: str) -> tuple[str, int]:
    response = await admin.describe_consumer_groups([group])
    entry = response[0].to_object()["groups"][0]
    return str(entry["state"]), len(entry["members"])


async def leader_stopped_during_a_rebalance(
    broker, topic: str, tmp_path: Path, delay_s: float
) -> str:
    """One run; returns what went wrong, or the empty string."""
    what = f"SIGTERM {delay_s}s after the joiner's JoinGroup"
    group = f"lead-{uuid.uuid4().hex[:8]}"
    root = tmp_path / group
    root.mkdir()
    config = write_config(root / "netscope.toml", bootstrap=broker.bootstrap, topic=topic,
                          group=group)  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", "run", "-c", str(config),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    first, second = _member(broker.bootstrap, group), _member(broker.bootstrap, group)
    log: list[str] = []
    polling: list[asyncio.Task[None]] = []
    try:
        await admin.start()
        async with asyncio.timeout(40):  # alone in the group: the leader (generation 0)
            await _read_until(proc.stderr, log, f"(now {PARTITIONS})")
        # A follower joins: generation 1 forms with the instance still its leader. (aiokafka
        # sends no LeaveGroup at generation 0, so the leader must be past it.)
        polling.append(await _joined(first, topic))
        async with asyncio.timeout(40):
            await _read_until(proc.stderr, log, f"(now {PARTITIONS // 2})")
        await wait_for(lambda: len(first.assignment()) == PARTITIONS // 2, timeout_s=20,
                       what="the follower's assignment")  # fmt: skip
        reading = asyncio.ensure_future(proc.stderr.read())
        polling.append(await _joined(second, topic))

        async def forming() -> bool:  # its first JoinGroup has turned the group Forming
            return (await _members(admin, group))[1] >= 3

        await wait_for(forming, timeout_s=10, interval_s=0.02, what="the second JoinGroup")
        await asyncio.sleep(delay_s)  # the deliberate delay, not a wait
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        await asyncio.wait_for(proc.wait(), 25)
        stop_text = (await asyncio.wait_for(reading, 5)).decode(errors="replace")
        if proc.returncode != 0:
            return f"{what}: exit {proc.returncode}:\n{(''.join(log) + stop_text)[-3000:]}"

        def reassigned() -> bool:
            return len(first.assignment()) + len(second.assignment()) == PARTITIONS and all(
                m.assignment() for m in (first, second)
            )

        try:
            await wait_for(reassigned, timeout_s=RECOVER_WITHIN_S, what="every partition")
        except AssertionError:
            state = await _members(admin, group)
            return (
                f"{what}: not every partition assigned {RECOVER_WITHIN_S:.0f}s after the "
                f"leader's stop (group state {state[0]!r}, {state[1]} members):\n"
                f"{stop_text[-2000:]}"
            )
        took = time.monotonic() - t0
        print(f"{what}: every partition assigned again {took:.1f}s after SIGTERM")
        return ""
    finally:
        for task in polling:
            task.cancel()
        await asyncio.gather(*polling, return_exceptions=True)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for member in (first, second):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(member.stop(), 15)
        await admin.close()


def _member(bootstrap: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=500,
        enable_auto_commit=False,
    )


async def _joined(member: AIOKafkaConsumer, topic: str) -> asyncio.Task[None]:
    await member.start()
    member.subscribe([topic])

    async def poll() -> None:
        while True:
            with contextlib.suppress(Exception):
                await member.getmany(timeout_ms=200)
            await asyncio.sleep(0.05)

    return asyncio.create_task(poll())


async def _read_until(stream: asyncio.StreamReader, log: list[str], text: str) -> None:
    while not any(text in line for line in log):
        line = (await stream.readline()).decode(errors="replace")
        if not line:
            raise AssertionError(f"exited before {text!r}:\n{''.join(log)[-3000:]}")
        log.append(line)


async def test_the_group_assigns_again_after_its_leader_stops_during_a_rebalance(
    kafka_broker, tmp_path: Path
) -> None:
    topic = f"lead-stop-{os.getpid()}"
    await kafka_broker.create_topic(topic, PARTITIONS)
    found = await asyncio.gather(
        *(leader_stopped_during_a_rebalance(kafka_broker, topic, tmp_path, d) for d in DELAYS_S)
    )
    failures = [f for f in found if f]
    assert not failures, "\n\n".join(failures)
