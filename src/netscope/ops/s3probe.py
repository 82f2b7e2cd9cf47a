"""Can these credentials do what NetScope does with the audit store? Prove it with a probe
object: list (readiness' signed request), create-only write (every batch), read (the
exactly-once dedupe reads an object back when its key is taken) and delete (tidiness only).

Runbook section 2 asks for RGW credentials with read/write on the audit bucket, and INC-02
step 1 says "check access keys/secret and bucket permissions": a read-only key passes every
signed read, including the readiness probe, and only fails at the first batch, in degraded
mode. This probe names that case "no write permission" before NetScope starts.

The probe goes through ``AuditStore`` (the writer's own client and settings), under
``{prefix}/_preflight/``, which no audit listing reads (those list ``{prefix}/dt=…``).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

import obstore

from netscope.audit.store import AuditStore, StoreTimeout
from netscope.config import AuditConfig
from netscope.ops.verdict import Status

_CODE = re.compile(r"<Code>([^<]+)</Code>")
_HTTP_STATUS = re.compile(r"status code: (\d{3})")
_WHAT = {"list": "list", "put": "write", "get": "read", "delete": "delete"}
_METHOD = {"list": "LIST", "put": "PUT", "get": "GET", "delete": "DELETE"}


def explain(op: str, exc: BaseException, timeout_s: float) -> str:
    """An S3 failure in an operator's words; the S3 error code kept in parentheses.

    obstore reports AccessDenied, a wrong secret and an unknown key all as
    ``PermissionDeniedError``: only the ``<Code>`` in the answer tells them apart.
    """
    if isinstance(exc, StoreTimeout | TimeoutError):
        return f"no answer to {_METHOD[op]} within {timeout_s:g} s"
    text = str(exc)
    code_match = _CODE.search(text)
    code = code_match.group(1) if code_match else None
    status_match = _HTTP_STATUS.search(text)
    status = f", {status_match.group(1)}" if status_match else ""
    if code == "AccessDenied":
        return f"no {_WHAT[op]} permission ({_METHOD[op]} AccessDenied{status})"
    if code == "InvalidAccessKeyId":
        return f"unknown access key (InvalidAccessKeyId{status})"
    if code == "SignatureDoesNotMatch":
        return f"wrong secret key (SignatureDoesNotMatch{status})"
    if code == "NoSuchBucket":
        return f"the bucket does not exist (NoSuchBucket{status})"
    if code:
        return f"{_METHOD[op]} refused: {code}{status}"
    if "error sending request" in text or "Connection refused" in text:
        return "unreachable: no connection (is RGW running, the endpoint right?)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{_METHOD[op]} failed: {type(exc).__name__}: {first[:200]}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    status: Status
    figure: str
    detail: str = ""


async def probe(cfg: AuditConfig) -> ProbeResult:
    """List, write, read back and delete one probe object with NetScope's own store client."""
    store = AuditStore.from_config(cfg)
    where = store.description
    key = f"{cfg.prefix}/_preflight/{uuid.uuid4().hex}.probe"
    body = f"netscope check-config --connect {time.time():.3f}\n".encode()
    timeout_s = cfg.write_timeout_s
    started = time.monotonic()
    try:
        await store.probe()
    except Exception as exc:
        return ProbeResult(Status.FAIL, f"{where}: {explain('list', exc, timeout_s)}")
    try:
        await store.put_if_absent(key, body)
    except Exception as exc:
        why = explain("put", exc, timeout_s)
        return ProbeResult(
            Status.FAIL,
            f"{where}: {why}",
            "list ok; NetScope writes every audit batch here: give these credentials "
            "write access to the bucket (runbook §2, INC-02 step 1)",
        )
    try:
        read = await store.get(key)
    except Exception as exc:
        return ProbeResult(Status.FAIL, f"{where}: {explain('get', exc, timeout_s)}",
                           f"list and write ok; probe object left at {key}")  # fmt: skip
    if read != body:
        return ProbeResult(Status.FAIL, f"{where}: read back {len(read)} bytes, wrote "
                           f"{len(body)}: the store does not return what it stored")  # fmt: skip
    try:
        # AuditStore has no delete (NetScope never deletes audit objects); the probe cleans
        # up after itself with the same client.
        await store._bounded(obstore.delete_async(store._store, key))
    except Exception as exc:
        return ProbeResult(
            Status.WARN,
            f"{where}: list, write, read ok; {explain('delete', exc, timeout_s)}",
            f"probe object left at {key} (NetScope does not need delete; remove it by hand)",
        )
    ms = (time.monotonic() - started) * 1000
    return ProbeResult(Status.PASS, f"{where}: list, write, read, delete ok ({ms:.0f} ms)")
