"""Which DescribeGroups answers mark tansu, whose group a leader's LeaveGroup can wedge
(ingest/group.py). The answers are the brokers' own, as read on this machine."""

import pytest

from netscope.ingest.group import keeps_departed_leader


@pytest.mark.parametrize(
    ("state", "protocol"),
    [
        ("Stable", ""),  # tansu 0.6, a formed group: no protocol named
        ("Unknown", ""),  # tansu forming, a leader named
        ("Assigning", ""),  # tansu forming, no leader yet
    ],
)
def test_tansu_answers_keep_a_leader_silent(state: str, protocol: str) -> None:
    assert keeps_departed_leader(state, protocol)


@pytest.mark.parametrize(
    ("state", "protocol"),
    [
        ("Stable", "roundrobin"),  # noida 0.2.3 and Apache Kafka name the assignor
        ("PreparingRebalance", ""),  # Kafka's rebalance states: a LeaveGroup is taken
        ("CompletingRebalance", "roundrobin"),
        ("Empty", ""),
        ("Dead", ""),
    ],
)
def test_other_brokers_answers_let_the_leader_leave(state: str, protocol: str) -> None:
    assert not keeps_departed_leader(state, protocol)
