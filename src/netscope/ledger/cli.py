"""``netscope ledger``: what the idempotency ledger holds, for an operator.

    netscope ledger status -c FILE                  backend, keys by state, expired leases
    netscope ledger lookup KEY -c FILE              a key's entry on every upstream
    netscope ledger purge --older-than 7d -c FILE   forget completed and released keys (they
                                                    may be called again by a later replay or
                                                    redelivery)
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from netscope.config import ConfigError, Settings, load_settings
from netscope.ledger.factory import build_ledger
from netscope.ledger.model import Entry, EntryState, Ledger, LedgerUnavailable

T = TypeVar("T")
EXIT_CONFIG = 2
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

app = typer.Typer(
    help="The idempotency ledger: status, look a key up, purge old keys.",
    no_args_is_help=True,
)
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file; NETSCOPE_* env vars override it."),
]


def parse_duration_s(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``24h``, ``7d`` -> seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 15m, 24h or 7d")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _ts(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _open(config: Path | None) -> tuple[Settings, Ledger]:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"netscope: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    ledger = build_ledger(settings)
    if ledger is None:
        typer.echo("netscope: the ledger is off (ledger.backend = \"none\", or no upstream "
                   "has idempotency.enabled)", err=True)
        raise typer.Exit(EXIT_CONFIG)
    return settings, ledger


async def _with(ledger: Ledger, work: Callable[[], Awaitable[T]]) -> T:
    try:
        await ledger.open()
        return await work()
    except LedgerUnavailable as exc:
        typer.echo(f"netscope: ledger {ledger.description} unavailable: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        await ledger.close()


_STATE_NOTES = {
    EntryState.RELEASED: " (the outcome does not count as done: another message or a replay "
    "calls it again; the message at audit_ref, redelivered, does not)",
}


def describe(entry: Entry) -> list[str]:
    lines = [
        f"{entry.key.upstream}  {entry.key.idempotency_key}",
        f"  state        {entry.state}{_STATE_NOTES.get(entry.state, '')}",
        f"  created_at   {_ts(entry.created_at)}",
    ]
    if entry.lease_until is not None:
        expired = " (expired)" if entry.lease_until <= time.time() else ""
        lines.append(f"  lease_until  {_ts(entry.lease_until)}{expired}")
    if entry.completion is not None:
        c = entry.completion
        lines += [
            f"  outcome      {c.outcome}" + (f" (status {c.status})" if c.status else ""),
            f"  attempts     {c.attempts}",
            f"  completed_at {_ts(c.completed_at)}",
            f"  audit_ref    {c.audit_ref}",
            f"  expires_at   {_ts(entry.expires_at)}",
        ]
    if entry.takeovers:
        lines.append(f"  takeovers    {entry.takeovers} (leases that ran out: called again)")
    return lines


@app.command("status")
def status(config: ConfigOpt = None) -> None:
    """Backend, keys in progress, completed and released, leases that ran out."""
    _, ledger = _open(config)

    async def work() -> None:
        st = await ledger.stats(time.time())
        typer.echo(f"ledger       {st.backend}")
        typer.echo(f"in_progress  {st.in_progress}")
        typer.echo(f"completed    {st.completed}")
        typer.echo(
            f"released     {st.released} (refused; kept so that the same message, "
            "redelivered, is not called again)"
        )
        typer.echo(f"expired      {st.expired_leases} (in progress, lease ran out: a crash)")
        typer.echo(f"oldest       {_ts(st.oldest_completed_at)}")

    asyncio.run(_with(ledger, work))


@app.command("lookup")
def lookup(
    key: Annotated[str, typer.Argument(help="The idempotency_key (default: the request_id).")],
    config: ConfigOpt = None,
) -> None:
    """A key's entry on every upstream. Exit 1 if the ledger does not hold it."""
    _, ledger = _open(config)

    async def work() -> int:
        entries = await ledger.find(key)
        if not entries:
            typer.echo(f"{key}: not in the ledger (never claimed, expired, or purged)")
            return 1
        for entry in entries:
            typer.echo("\n".join(describe(entry)))
        return 0

    raise typer.Exit(asyncio.run(_with(ledger, work)))


@app.command("purge")
def purge(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Completed before this long ago: 24h, 7d, ...")
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Forget completed and released keys settled longer ago than a duration. A purged key
    is called again if a replay or a redelivery meets it: purge only windows you will not
    replay."""
    try:
        seconds = parse_duration_s(older_than)
    except ValueError as exc:
        typer.echo(f"netscope: --older-than: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    cutoff = time.time() - seconds
    _, ledger = _open(config)
    if not yes and not typer.confirm(
        f"Forget keys of {ledger.description} settled before {_ts(cutoff)}?"
    ):
        raise typer.Exit(1)

    async def work() -> None:
        n = await ledger.purge(cutoff)
        typer.echo(f"purged {n} completed and released keys (settled before {_ts(cutoff)})")

    asyncio.run(_with(ledger, work))
