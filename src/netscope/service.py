"""One NetScope process: the pipeline and its API on a single event loop, with signal handling.

Runbook section 4 (controlled stop): the first SIGTERM/SIGINT stops fetching, drains in-flight
work within ``pipeline.drain_timeout_s``, flushes the audit within ``pipeline.flush_timeout_s``,
commits what is durable and exits with a summary logged at warning level. Every step is bounded
(see Pipeline.stop), so a stop ends even with the broker gone or the store down and the spool
full, or the consumer in the middle of a group join. Exit codes: 0 clean; 3 when something was
left (it is not committed, so Kafka redelivers it); 1 when the fetch loop failed; 130 on a
second signal, which abandons what is left at once. SIGUSR1 logs where every task waits and
changes nothing (the evidence for a stop or a stall that seems stuck).

Two guards stand behind the bounded steps. The fetch loop must end within
``CLOSE_STEP_TIMEOUT_S`` of the signal or it is cancelled. A stop still running past the sum
of every step's bound logs where each task waits and exits 3 (nothing undurable was committed,
so Kafka redelivers it): a hang leaves its evidence instead of waiting for a SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn

from netscope.api.app import create_app, status_snapshot
from netscope.config import Settings
from netscope.pipeline import CLOSE_STEP_TIMEOUT_S, Pipeline
from netscope.runtime import CANCEL_GRACE_S, bounded_step, task_stacks
from netscope.status import StopSummary

log = logging.getLogger("netscope.service")

EXIT_FAILED = 1
EXIT_FORCED = 130
EXIT_UNCLEAN = 3
# Pipeline.stop's closing steps besides the per-upstream client closes: workers stop, ledger
# settles, audit writers close, final commit, background tasks end, last spool drain, consumer
# close, producer close, ledger close.
STOP_CLOSING_STEPS = 9


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


GC_YOUNG_THRESHOLD = 5000  # allocations between young-generation passes (CPython: 700)


def _tune_gc() -> None:
    """Measured at saturation (20,000 messages): with CPython's defaults the collector took
    4-20 % of the CPU (the most when calls queue on a bulkhead), about 1.5 % after this.

    What exists once the service is up (modules, config, clients, metrics) lives as long as
    the process: freezing it keeps it out of every pass. Per-message objects arrive in fetch
    batches of hundreds and live for the call (~10-100 ms): at the default threshold of 700
    allocations a young-generation pass ran dozens of times a second, each promoting work in
    flight into the older generations and making their passes frequent too.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class Service:
    def __init__(self, settings: Settings, **pipeline_kwargs: Any) -> None:
        self.settings = settings
        self.pipeline = Pipeline(settings, **pipeline_kwargs)
        self.hub = _make_hub(self.pipeline)
        self.app = create_app(self.pipeline, hub=self.hub)
        self.server = _QuietServer(
            uvicorn.Config(
                self.app,
                host=settings.api.host,
                port=settings.api.port,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        self._signals = 0
        self._fetching: asyncio.Task[None] | None = None
        self._guards: list[asyncio.TimerHandle] = []  # the stop's, cancelled once it is done
        self.summary: StopSummary | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.api.host}:{self.bound_port}"

    @property
    def bound_port(self) -> int:
        servers = getattr(self.server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.settings.api.port

    async def start(self) -> None:
        await self.pipeline.start()
        if self.hub is not None:
            await self.hub.start()
        self._server_task = asyncio.create_task(self.server.serve(), name="api")
        while not self.server.started:
            if self._server_task.done():
                self._server_task.result()  # raises the bind error, with its reason
                raise RuntimeError("API server exited during start")
            await asyncio.sleep(0.01)

    async def stop(self) -> StopSummary:
        summary = await self.pipeline.stop()
        self.server.should_exit = True
        await bounded_step("API server stop", self._server_task, CLOSE_STEP_TIMEOUT_S)
        if self.hub is not None:
            await bounded_step("event hub stop", self.hub.stop(), CLOSE_STEP_TIMEOUT_S)
        self.summary = summary
        return summary

    async def run_until_signal(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGUSR1, self.dump_tasks)
        await self.start()
        _tune_gc()
        log.info(
            "netscope ready: api %s (health %s/health/ready, metrics %s/metrics, "
            "events ws%s/ws/events)",
            self.base_url,
            self.base_url,
            self.base_url,
            self.base_url.removeprefix("http"),
        )
        return await self.serve()

    async def serve(self) -> int:
        """After :meth:`start`: fetch until :meth:`request_stop`, then stop within the bounds
        of every step; returns the process exit code."""
        failed = False
        self._fetching = asyncio.create_task(self.pipeline.run(), name="fetch-loop")
        try:
            await self._fetching
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._fetching.cancelled() or (task is not None and task.cancelling()):
                raise
            # The stop's bound cancelled a fetch loop that did not end (logged there).
        except Exception:
            # Stop the way SIGTERM does rather than die mid-flight: what is durable gets
            # committed, the rest is redelivered, and the supervisor sees a failure.
            log.exception("fetch loop failed: stopping")
            failed = True
        summary = await self.stop()
        code = EXIT_FAILED if failed else 0 if summary.clean else EXIT_UNCLEAN
        # Warning, whatever the outcome: the one line that says what a stop left behind must
        # survive logging.level = "warning".
        log.warning(
            "netscope stopped (exit %d): processed=%d abandoned_in_flight=%d "
            "audit_pending=%d committed=%s%s",
            code,
            summary.processed,
            summary.abandoned,
            summary.audit_pending,
            summary.committed,
            "" if summary.clean else "; what was not committed will be redelivered by Kafka",
        )
        for guard in self._guards:  # the stop ended within its bounds
            guard.cancel()
        return code

    def request_stop(self) -> None:
        """What a first signal does: stop fetching, and arm the two guards of the stop."""
        if self._guards:
            return  # already stopping
        self.pipeline.request_stop()
        loop = asyncio.get_running_loop()
        self._guards = [
            loop.call_later(CLOSE_STEP_TIMEOUT_S, self._end_fetch_loop),
            loop.call_later(self.stop_bound_s, self._stop_overdue),
        ]

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "%s received: stopping (drain <= %.0fs); send again to force",
                signal.Signals(sig).name,
                self.settings.pipeline.drain_timeout_s,
            )
            self.request_stop()
            return
        self.force_exit()

    def dump_tasks(self) -> None:
        """SIGUSR1: log where every task waits, and go on (a stop or a stall, diagnosed
        without stopping the process: ``kill -USR1 <pid>``)."""
        log.warning(
            "SIGUSR1: %s; tasks:\n%s",
            "stopping" if self._guards else "running",
            task_stacks(),
        )

    def force_exit(self) -> None:
        """A second signal: abandon what is left at once (Kafka redelivers it)."""
        status = self.pipeline.status()
        log.error(
            "second signal: forced exit %d; abandoned %d in-flight messages and %d unaudited "
            "records (not committed: Kafka will redeliver them)",
            EXIT_FORCED,
            status.in_flight,
            status.queue_depth,
        )
        logging.shutdown()
        os._exit(EXIT_FORCED)

    @property
    def stop_bound_s(self) -> float:
        """The sum of every stop step's bound, with one step's slack: the fetch loop's end,
        the drain, the audit flush, the pipeline's closing steps (one per upstream client),
        the API server and the event hub."""
        cfg = self.settings.pipeline
        # the fetch loop, the closing steps, the upstream clients, server and hub, slack
        steps = 1 + STOP_CLOSING_STEPS + len(self.settings.upstreams) + 2 + 1
        return cfg.drain_timeout_s + cfg.flush_timeout_s + steps * (
            CLOSE_STEP_TIMEOUT_S + CANCEL_GRACE_S
        )

    def _end_fetch_loop(self) -> None:
        fetching = self._fetching
        if fetching is None or fetching.done():
            return
        log.warning(
            "stop: the fetch loop did not end within %.1fs; cancelling it. It waited at:\n%s",
            CLOSE_STEP_TIMEOUT_S,
            task_stacks({fetching}),
        )
        fetching.cancel()

    def _stop_overdue(self) -> None:
        log.error(
            "stop: still running %.0fs after the signal, past the bound of every step: "
            "forced exit %d (what was not committed will be redelivered by Kafka); tasks:\n%s",
            self.stop_bound_s,
            EXIT_UNCLEAN,
            task_stacks(),
        )
        logging.shutdown()
        os._exit(EXIT_UNCLEAN)


def _make_hub(pipeline: Pipeline) -> Any | None:
    try:
        from netscope.api.hub import EventHub
    except ImportError:
        return None
    api = pipeline.settings.api
    hub = EventHub(
        pipeline.events,
        client_queue=api.ws_client_queue,
        heartbeat_s=api.ws_heartbeat_s,
        token=api.ws_token.get_secret_value() if api.ws_token else None,
        registry=pipeline.metrics.registry,
    )
    if hasattr(hub, "set_status_provider"):
        hub.set_status_provider(lambda: status_snapshot(pipeline))
    return hub
