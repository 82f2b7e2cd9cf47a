"""Client CPU per request of each NetScope transport: loopback, keep-alive, 1 KiB answers.

    .venv/bin/python bench/transport_bench.py [--requests 20000] [--concurrency 64]
        [--rounds 2] [--loops asyncio,uvloop] [--transports aiohttp,reqwest] [--no-pin]

An aiohttp server (uvloop, a process of its own, pinned to core 0) answers every request 200
with a 1 KiB body. Each round starts one client process per (transport, loop), pinned to
core 1: the transport NetScope uses (outbound/transports/, through ``make_transport``), one
started pool, ``--concurrency`` tasks sending GETs of a generated message until ``--requests``
are answered, after a warm-up. The client reports over the measured requests:

- CPU-us / request: user + system CPU of the client process, every thread included (the
  tokio runtime of pyreqwest runs on threads of its own), over the requests answered;
- requests / s: wall clock, bounded by the one-process server as well as the client.

Rounds interleave the transports (aiohttp, reqwest, aiohttp, reqwest, ...) because this
machine's speed drifts; the table gives every run, then the median per (transport, loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time

_SERVER = r"""
import os, sys
import uvloop
from aiohttp import web
if len(sys.argv) > 1 and sys.argv[1] != "-":
    os.sched_setaffinity(0, {int(sys.argv[1])})
BODY = b"x" * 1024
async def answer(request):
    return web.Response(body=BODY)
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()
import asyncio
uvloop.run(main())
"""


async def _client(name: str, port: int, requests: int, concurrency: int, warmup: int) -> dict:
    import orjson

    from netscope.config import UpstreamConfig
    from netscope.contract.request import CallRequest, parse_request
    from netscope.outbound.transport import make_transport
    from netscope.tools.messages import make_request

    cfg = UpstreamConfig(
        base_url=f"http://127.0.0.1:{port}", transport=name, max_connections=concurrency
    )
    msg = make_request("bench", method="GET", rand=random.Random(1))
    req = parse_request(orjson.dumps(msg), upstreams={"bench"})
    assert isinstance(req, CallRequest), req
    transport = make_transport(name, "bench", cfg)
    await transport.start()
    failed = 0

    async def run(count: int) -> None:
        left = count

        async def worker() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                res = await transport.send(
                    req, connect_timeout_s=1.0, read_timeout_s=5.0, total_timeout_s=10.0
                )
                if res.status != 200 or res.error_class is not None:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await run(warmup)
    failed = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    await run(requests)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    await transport.close()
    return {
        "cpu_us_per_request": cpu / requests * 1e6,
        "requests_per_s": requests / wall,
        "failed": failed,
    }


def client_main(args: argparse.Namespace) -> None:
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    coro = _client(args.transport, args.port, args.requests, args.concurrency, args.warmup)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--transports", default="aiohttp,reqwest")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    # internal: one client run
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--transport", help=argparse.SUPPRESS)
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--core", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    pin = not args.no_pin and os.cpu_count() and os.cpu_count() >= 2  # type: ignore[operator]
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, "0" if pin else "-"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        runs: dict[tuple[str, str], list[dict]] = {}
        print(f"{args.requests} requests/run, {args.concurrency} concurrent, 1 KiB answers")
        print(f"{'round':>5} {'transport':<9} {'loop':<8} {'CPU-us/req':>10} {'req/s':>8} fail")
        for rnd in range(1, args.rounds + 1):
            for loop in args.loops.split(","):
                for name in args.transports.split(","):
                    argv = [sys.executable, __file__, "--client", "--transport", name]
                    argv += ["--loop", loop, "--port", str(port)]
                    argv += ["--requests", str(args.requests), "--warmup", str(args.warmup)]
                    argv += ["--concurrency", str(args.concurrency)]
                    if pin:
                        argv += ["--core", "1"]
                    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
                    if proc.returncode != 0:
                        print(f"{rnd:>5} {name:<9} {loop:<8} exit {proc.returncode}")
                        print(proc.stderr[-2000:])
                        continue
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                    runs.setdefault((name, loop), []).append(res)
                    print(
                        f"{rnd:>5} {name:<9} {loop:<8} {res['cpu_us_per_request']:>10.1f} "
                        f"{res['requests_per_s']:>8.0f} {res['failed']}",
                        flush=True,
                    )
        print("\nmedians")
        for (name, loop), results in runs.items():
            cpu = statistics.median(r["cpu_us_per_request"] for r in results)
            rate = statistics.median(r["requests_per_s"] for r in results)
            print(f"      {name:<9} {loop:<8} {cpu:>10.1f} {rate:>8.0f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
