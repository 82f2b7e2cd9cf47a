"""Admin authentication (api/auth.py): constant-time token check and the brute-force brake."""

from __future__ import annotations

import hmac

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from netscope.api import auth
from netscope.api.auth import (
    AdminAuth,
    AdminGate,
    BrakePolicy,
    FailureBrake,
    Verdict,
    bearer_token,
    token_matches,
)
from netscope.config import ConfigError, load_settings
from netscope.resilience.clock import FakeClock

TOKEN = "s3cr3t-admin-token"


def make(policy: BrakePolicy | None = None) -> tuple[FailureBrake, FakeClock]:
    clock = FakeClock(100.0)
    return FailureBrake(policy or BrakePolicy(), clock), clock


# ------------------------------------------------------------------ the token check


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("abc", None),
    ],
)
def test_bearer_token_reads_only_the_bearer_scheme(header, expected) -> None:
    assert bearer_token(header) == expected


def test_token_matches_only_the_exact_token() -> None:
    assert token_matches(TOKEN, TOKEN)
    for wrong in (None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), " " + TOKEN, "\x00"):
        assert not token_matches(wrong, TOKEN), wrong


def test_token_is_compared_in_constant_time_on_fixed_length_digests(monkeypatch) -> None:
    """Timing is not measured (too noisy on a shared machine): what makes it constant is
    checked instead. Every comparison goes through hmac.compare_digest, on two 32-byte
    digests whatever was supplied, so neither the matching prefix nor the real token's
    length shows in the time taken."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    for supplied in (None, "", "x", TOKEN[:5], TOKEN, "y" * 10_000):
        token_matches(supplied, TOKEN)
    assert len(calls) == 6
    assert all(len(a) == len(b) == 32 for a, b in calls)
    assert len({b for _, b in calls}) == 1  # the expected side never depends on the input


# ------------------------------------------------------------------ the brake


def test_policy_lockouts_double_after_the_free_failures_and_are_capped() -> None:
    policy = BrakePolicy(free_failures=3, base_lockout_s=1.0, max_lockout_s=10.0)
    assert [policy.lockout_s(n) for n in range(1, 10)] == [0, 0, 0, 1, 2, 4, 8, 10, 10]
    assert policy.lockout_s(10**9) == 10.0  # no float overflow however long the attack


@pytest.mark.parametrize(
    "kwargs",
    [
        {"free_failures": 0},
        {"max_clients": 0},
        {"base_lockout_s": 0.0},
        {"base_lockout_s": 5.0, "max_lockout_s": 1.0},
    ],
)
def test_policy_rejects_nonsense(kwargs) -> None:
    with pytest.raises(ValueError):
        BrakePolicy(**kwargs)


def test_free_failures_cost_nothing_then_the_address_is_locked_out() -> None:
    brake, clock = make(BrakePolicy(free_failures=5))
    assert [brake.failed("10.0.0.1") for _ in range(5)] == [0.0] * 5
    assert brake.retry_after_s("10.0.0.1") == 0.0
    assert brake.failed("10.0.0.1") == 1.0
    assert brake.retry_after_s("10.0.0.1") == 1.0
    assert brake.retry_after_s("10.0.0.2") == 0.0  # per address
    clock.advance(0.4)
    assert brake.retry_after_s("10.0.0.1") == pytest.approx(0.6)
    clock.advance(0.6)
    assert brake.retry_after_s("10.0.0.1") == 0.0
    assert brake.failed("10.0.0.1") == 2.0  # still counted: the next lockout doubles


def test_success_forgets_the_address() -> None:
    brake, _ = make(BrakePolicy(free_failures=2))
    for _ in range(3):
        brake.failed("a")
    brake.succeeded("a")
    assert brake.retry_after_s("a") == 0.0 and len(brake) == 0
    assert brake.failed("a") == 0.0


def test_quiet_time_starts_an_address_afresh() -> None:
    brake, clock = make(BrakePolicy(free_failures=1, reset_after_s=60.0, base_lockout_s=10.0))
    brake.failed("a")
    assert brake.failed("a") == 10.0
    clock.advance(10.0 + 59.0)  # quiet time counts from the end of the lockout
    assert brake.failed("a") == 20.0
    clock.advance(20.0 + 60.0)
    assert brake.failed("a") == 0.0 and brake.retry_after_s("a") == 0.0


def test_the_table_of_addresses_is_bounded() -> None:
    brake, _ = make(BrakePolicy(free_failures=1, max_clients=100))
    brake.failed("victim")
    brake.failed("victim")  # locked out
    for i in range(1000):
        brake.failed(f"spray-{i}")
    assert len(brake) == 100
    # The oldest entry went first: bounded memory costs forgetting, never refusing others.
    assert brake.retry_after_s("victim") == 0.0


@given(st.lists(st.sampled_from(["fail", "wait", "ok"]), max_size=60))
def test_lockout_never_exceeds_the_cap_and_never_shrinks_while_failing(steps) -> None:
    policy = BrakePolicy(free_failures=2, base_lockout_s=0.5, max_lockout_s=8.0)
    brake, clock = make(policy)
    last = 0.0
    for step in steps:
        if step == "fail":
            lockout = brake.failed("a")
            assert 0.0 <= lockout <= policy.max_lockout_s
            assert lockout >= last
            last = lockout
        elif step == "wait":
            clock.advance(1.0)
        else:
            brake.succeeded("a")
            last = 0.0
        assert 0.0 <= brake.retry_after_s("a") <= policy.max_lockout_s


def test_an_attacker_gets_few_guesses_per_hour() -> None:
    """The point of the brake: an attacker who retries the moment it is allowed to."""
    clock = FakeClock(0.0)
    door = AdminAuth(TOKEN, FailureBrake(BrakePolicy(), clock))
    guesses = 0
    while clock.monotonic() < 3600.0:
        decision = door.check("203.0.113.9", "Bearer guess")
        if decision.verdict is Verdict.THROTTLED:
            clock.advance(decision.retry_after_s)
            continue
        assert decision.verdict is Verdict.UNAUTHORIZED
        guesses += 1
        clock.advance(0.001)
    assert 15 <= guesses <= 30, guesses  # vs. thousands per second without it


def test_a_locked_out_address_is_refused_before_its_token_is_looked_at() -> None:
    """Else the refusals themselves would answer "wrong" at full speed."""
    clock = FakeClock(0.0)
    door = AdminAuth(TOKEN, FailureBrake(BrakePolicy(free_failures=1), clock))
    door.check("a", "Bearer nope")
    assert door.check("a", "Bearer nope").verdict is Verdict.UNAUTHORIZED
    throttled = door.check("a", f"Bearer {TOKEN}")
    assert throttled.verdict is Verdict.THROTTLED and throttled.retry_after_header == "1"
    assert door.check("b", f"Bearer {TOKEN}").verdict is Verdict.ALLOWED
    clock.advance(1.0)
    assert door.check("a", f"Bearer {TOKEN}").verdict is Verdict.ALLOWED
    assert door.check("a", "Bearer nope").verdict is Verdict.UNAUTHORIZED  # forgiven


# ------------------------------------------------------------------ the HTTP face


def _app(gate: AdminGate) -> TestClient:
    app = FastAPI()

    @app.get("/admin/x", dependencies=[Depends(gate)])
    async def x() -> dict[str, bool]:
        return {"ok": True}

    return TestClient(app)


def test_refusals_say_unauthorized_and_nothing_else() -> None:
    client = _app(AdminGate(TOKEN, FailureBrake(BrakePolicy(free_failures=100))))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = client.get("/admin/x", headers=headers)
        assert resp.status_code == 401
        assert resp.json() == {"detail": "unauthorized"}
        assert resp.headers["www-authenticate"] == "Bearer"
    assert client.get("/admin/x", headers={"Authorization": f"Bearer {TOKEN}"}).json() == {
        "ok": True
    }


def test_repeated_failures_get_429_with_retry_after() -> None:
    client = _app(AdminGate(TOKEN, FailureBrake(BrakePolicy(free_failures=2))))
    codes = [client.get("/admin/x").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    resp = client.get("/admin/x", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
    assert resp.json() == {"detail": "too many failed attempts"}


def test_no_token_configured_disables_the_admin_api() -> None:
    resp = _app(AdminGate(None)).get("/admin/x", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 403


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("key", ["NETSCOPE_API__ADMIN_TOKEN", "NETSCOPE_API__WS_TOKEN"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_token_is_a_configuration_error_not_an_open_door(key, value) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={key: value})
    assert err.value.problems[0][0] == key.removeprefix("NETSCOPE_").lower().replace("__", ".")


def test_an_empty_admin_token_file_is_a_configuration_error(tmp_path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"NETSCOPE_API__ADMIN_TOKEN_FILE": str(empty)})
    assert err.value.problems == [("api.admin_token_file", "the file is empty")]
