"""The audit object store: Ceph RGW over S3, or a local folder, behind one thin interface.

obstore does the protocol work (SigV4, conditional PUT, listing) for both backends, so the
embedded default writes exactly the layout RGW gets. This module only adds what NetScope needs
on top: create-only writes that report "already there" as a value, a bounded time per request
(obstore's own retries would otherwise hold a failing write for minutes), fsync for the local
backend (object_store renames a temp file but does not flush it), and a signed readiness probe.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import obstore
from obstore.exceptions import AlreadyExistsError, GenericError, NotFoundError, PreconditionError
from obstore.store import LocalStore, S3Store

from netscope.config import AuditConfig


class StoreTimeout(Exception):
    """The store did not answer in time: the write may or may not have been applied."""


# obstore raises a GenericError for everything reqwest reports, timeouts included, and gives
# no structured kind; its text carries reqwest's debug form. Matching it keeps a timeout that
# reqwest noticed first from being counted as a generic error (operators alert on timeouts).
_REQWEST_TIMEOUT_MARKS = ("kind: Timeout", "TimedOut", "operation timed out")


def _is_timeout(exc: GenericError) -> bool:
    text = str(exc)
    return any(mark in text for mark in _REQWEST_TIMEOUT_MARKS)


class AuditStore:
    def __init__(
        self,
        store: Any,
        *,
        description: str,
        timeout_s: float,
        local_root: Path | None = None,
    ) -> None:
        self._store = store
        self.description = description
        self._timeout_s = timeout_s
        self._local_root = local_root

    @classmethod
    def from_config(cls, cfg: AuditConfig) -> AuditStore:
        if cfg.backend == "local":
            root = cfg.local.path.resolve()
            root.mkdir(parents=True, exist_ok=True)
            return cls(
                LocalStore(str(root), mkdir=True),
                description=f"local folder {root}",
                timeout_s=cfg.write_timeout_s,
                local_root=root,
            )
        s3 = cfg.s3
        assert s3.access_key_id is not None and s3.secret_access_key is not None
        # NetScope's own bound (asyncio) decides; reqwest's timeout is only a backstop one second
        # later, so the two do not race to name the same failure.
        backstop_ms = int((cfg.write_timeout_s + 1.0) * 1000)
        store = S3Store(
            s3.bucket,
            endpoint=s3.endpoint,
            access_key_id=s3.access_key_id.get_secret_value(),
            secret_access_key=s3.secret_access_key.get_secret_value(),
            region=s3.region,
            virtual_hosted_style_request=False,
            client_options={
                "allow_http": s3.endpoint.startswith("http://"),
                "timeout": f"{backstop_ms}ms",
                "connect_timeout": "2s",
            },
            # NetScope owns retries (spool + drainer); obstore's would hide outages for minutes.
            retry_config={
                "max_retries": 0,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=1),
                    "base": 2,
                },
                "retry_timeout": timedelta(milliseconds=backstop_ms),
            },
        )
        return cls(
            store, description=f"s3 {s3.endpoint}/{s3.bucket}", timeout_s=cfg.write_timeout_s
        )

    async def _bounded(self, coro: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await coro
        except TimeoutError:
            raise StoreTimeout(f"{self.description}: no answer in {self._timeout_s}s") from None
        except GenericError as exc:
            if _is_timeout(exc):
                raise StoreTimeout(f"{self.description}: request timed out") from exc
            raise

    async def put_if_absent(self, key: str, body: bytes) -> bool:
        """Create ``key`` unless it exists (``If-None-Match: *``): True written, False was there."""
        try:
            await self._bounded(obstore.put_async(self._store, key, body, mode="create"))
        except (AlreadyExistsError, PreconditionError):
            return False
        if self._local_root is not None:
            await asyncio.to_thread(_fsync_path, self._local_root / key)
        return True

    async def get(self, key: str) -> bytes:
        async def _get() -> bytes:
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())

        return await self._bounded(_get())

    async def exists(self, key: str) -> bool:
        try:
            await self._bounded(obstore.head_async(self._store, key))
        except NotFoundError:
            return False
        return True

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        """Keys under ``prefix`` in lexical order (offset order within a partition folder)."""
        async for chunk in obstore.list(self._store, prefix, chunk_size=1000):
            for meta in chunk:
                yield meta["path"]

    async def list_objects(self, prefix: str) -> AsyncIterator[tuple[str, int]]:
        """(key, size in bytes) under ``prefix``, in lexical order: a listing, no object read."""
        async for chunk in obstore.list(self._store, prefix, chunk_size=1000):
            for meta in chunk:
                yield meta["path"], int(meta["size"])

    async def probe(self) -> None:
        """A signed request that must succeed: an anonymous GET / says nothing about RGW health."""
        await self._bounded(obstore.list_with_delimiter_async(self._store, "netscope-probe/"))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
