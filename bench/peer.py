"""The same job written by hand, without NetScope: what users compare NetScope with.

    python bench/peer.py --bootstrap HOST:PORT --topic T --group G \
        --upstream payments=http://127.0.0.1:8080 --s3-endpoint URL --bucket B \
        --access-key K --secret-key S [--prefix audit-peer]

Consume a request, call the upstream it names, append a JSON line per message to an audit
batch, PUT the batch to S3 when it holds 500 records or its oldest is 1 s old, and commit
the batch's offsets only after that PUT. What it guarantees: a committed message was called
and its record is in S3 (at least once: a crash or a rebalance calls and audits again). What
it does not: no validation, breaker, retry, rate limit, deadline per message or per-key
order; a failed PUT ends the process; no metrics, no spool when S3 is down.

``--stop-after N`` is the benchmark's hook: print "start" at the first fetch, stop once N
messages are committed, print the consume -> durable seconds of each batch's oldest record,
and wait for stdin to close (the benchmark reads the process's CPU time meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import aiohttp
import boto3
import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

BATCH_RECORDS = 500
BATCH_AGE_S = 1.0
CONCURRENCY = 256  # messages in progress
CONNECTIONS = 100  # concurrent calls


async def main(args: argparse.Namespace) -> None:
    upstreams = dict(u.split("=", 1) for u in args.upstream)
    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, region_name="us-east-1",
                      aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key)
    consumer = AIOKafkaConsumer(args.topic, bootstrap_servers=args.bootstrap,
                                group_id=args.group, enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=6000,
                                max_poll_records=BATCH_RECORDS)
    sem = asyncio.Semaphore(CONCURRENCY)
    audit: list[dict] = []  # records not yet in S3
    offsets: dict[TopicPartition, int] = {}  # to commit once they are
    flushing: asyncio.Task | None = None
    committed = 0
    durable_s: list[float] = []  # per batch: its oldest record's consume -> PUT done

    async def call(http: aiohttp.ClientSession, msg, fetched_at: float) -> dict:
        rec = {"partition": msg.partition, "offset": msg.offset, "consumed_at": fetched_at}
        async with sem:
            try:
                req = orjson.loads(msg.value)
                rec.update(request_id=req["request_id"], upstream=req["upstream"],
                           method=req["method"], path=req["path"])
                headers = {**req.get("headers", {}), "traceparent": req["traceparent"],
                           "Idempotency-Key": req["idempotency_key"]}
                async with http.request(req["method"], upstreams[req["upstream"]] + req["path"],
                                        headers=headers, json=req.get("body")) as resp:
                    await resp.read()
                    rec["status"] = resp.status
            except Exception as exc:  # audited, not retried
                rec["error"] = repr(exc)
        rec["latency_s"] = time.time() - fetched_at
        return rec

    async def flush(records: list[dict], to_commit: dict[TopicPartition, int]) -> None:
        nonlocal committed
        body = b"\n".join(map(orjson.dumps, records)) + b"\n"
        key = f"{args.prefix}/{time.strftime('%Y/%m/%d/%H')}/{uuid.uuid4()}.jsonl"
        await asyncio.to_thread(s3.put_object, Bucket=args.bucket, Key=key, Body=body)
        durable_s.append(time.time() - records[0]["consumed_at"])
        await consumer.commit(to_commit)
        committed += len(records)

    await consumer.start()
    started = False
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            while not (args.stop_after and committed >= args.stop_after):
                batches = await consumer.getmany(timeout_ms=200, max_records=BATCH_RECORDS)
                if batches:
                    if args.stop_after and not started:
                        print("start", flush=True)
                        started = True
                    fetched_at = time.time()
                    tasks = [call(http, m, fetched_at) for ms in batches.values() for m in ms]
                    audit.extend(await asyncio.gather(*tasks))
                    for tp, ms in batches.items():
                        offsets[tp] = ms[-1].offset + 1
                if audit and (len(audit) >= BATCH_RECORDS
                              or time.time() - audit[0]["consumed_at"] >= BATCH_AGE_S):
                    if flushing is not None:
                        await flushing  # one PUT at a time; it raises if the last one failed
                    flushing = asyncio.create_task(flush(audit, offsets))
                    audit, offsets = [], {}
                elif flushing is not None and flushing.done():
                    await flushing
                    flushing = None
            if flushing is not None:
                await flushing
    finally:
        await consumer.stop()
    if args.stop_after:
        print(orjson.dumps(durable_s).decode(), flush=True)
        await asyncio.to_thread(sys.stdin.read)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("bootstrap", "topic", "group", "s3-endpoint", "bucket", "access-key",
                 "secret-key"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--upstream", action="append", required=True, help="NAME=BASE_URL")
    parser.add_argument("--prefix", default="audit-peer")
    parser.add_argument("--stop-after", type=int, default=0)
    uvloop.run(main(parser.parse_args()))
