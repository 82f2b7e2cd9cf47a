"""WebSocket broadcast delay at the benchmark's nominal rate, on the embedded default.

    .venv/bin/python bench/ws_broadcast_delay.py [--rate 200] [--seconds 20]

Runs `netscope demo` at the nominal rate, keeps one dashboard-like WebSocket client reading
/ws/events, then reads netscope_ws_broadcast_delay_seconds (event creation -> sent on the
socket) from /metrics and prints p50/p99 (bucket-interpolated, like histogram_quantile).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.pipeline_bench import _histogram_quantile
from netscope.devservices.base import free_port


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "netscope", "demo", "--port", str(port), "--rate", str(args.rate),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    received = 0
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health/live") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with http.ws_connect(f"http://127.0.0.1:{port}/ws/events") as ws:
                deadline = time.monotonic() + args.seconds
                while time.monotonic() < deadline:
                    msg = await ws.receive(timeout=5)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        received += 1
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.wait()
    name = "netscope_ws_broadcast_delay_seconds"
    p50, p99 = (_histogram_quantile(text, name, q) * 1000 for q in (0.5, 0.99))
    print(f"rate {args.rate:g} msg/s, {received} events received in {args.seconds:g}s: "
          f"broadcast delay p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
