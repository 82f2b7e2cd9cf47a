"""The audit store names a gateway that does not answer a timeout, whoever notices first.

The gateway here is a TCP listener that accepts and never answers: what a frozen RGW looks like
from the client. No Ceph is needed to show how obstore's failures are classified, and the
client code path is the production one (obstore's S3Store over a real socket).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from obstore.exceptions import GenericError
from obstore.store import S3Store

from netscope.audit.store import AuditStore, StoreTimeout
from netscope.config import AuditConfig


@pytest.fixture
async def silent_gateway() -> AsyncIterator[str]:
    held: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        held.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def _s3_config(endpoint: str, write_timeout_s: float) -> AuditConfig:
    return AuditConfig.model_validate(
        {
            "backend": "s3",
            "write_timeout_s": write_timeout_s,
            "s3": {
                "endpoint": endpoint,
                "bucket": "audit",
                "access_key_id": "test-access",
                "secret_access_key": "test-secret",
            },
        }
    )


async def test_a_silent_gateway_is_a_store_timeout(silent_gateway: str):
    store = AuditStore.from_config(_s3_config(silent_gateway, write_timeout_s=0.5))
    with pytest.raises(StoreTimeout):
        await store.put_if_absent("audit/a.jsonl.gz", b"x")


async def test_a_timeout_reqwest_notices_first_is_still_a_store_timeout(silent_gateway: str):
    """Under load either clock can fire first; CI once saw reqwest's, counted as GenericError."""
    s3 = S3Store(
        "audit",
        endpoint=silent_gateway,
        access_key_id="test-access",
        secret_access_key="test-secret",
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "300ms"},
        retry_config={"max_retries": 0},
    )
    store = AuditStore(s3, description="silent", timeout_s=30)
    with pytest.raises(StoreTimeout) as caught:
        await store.put_if_absent("audit/a.jsonl.gz", b"x")
    assert isinstance(caught.value.__cause__, GenericError)
