"""Configuration: one TOML file plus ``NETSCOPE_*`` environment overrides, validated at start.

Every model forbids unknown keys, so a typo fails at start with its key path instead of being
silently ignored. Secrets are ``SecretStr`` (masked in reprs, logs and errors) and may also be read
from a file (``*_file`` keys) so they never have to sit in the TOML. Policy models mirror the pure
resilience dataclasses field for field (the caller builds those with ``**model_dump()``), and
``UpstreamConfig`` builds them once at load, so their cross-field rules fail ``check-config`` and
start alike, with the key and the reason.

Precedence, highest first: environment (``NETSCOPE_SECTION__KEY``), TOML file, defaults.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from netscope.contract.outcomes import ErrorClass, Outcome
from netscope.resilience.retry import RETRYABLE_ERROR_CLASSES

UPSTREAM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Ratio = Annotated[float, Field(gt=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_RETRY_ON_CHOICES = " or ".join(
    ", ".join(f"'{c}'" for c in sorted(RETRYABLE_ERROR_CLASSES)).rsplit(", ", 1)
)


def _retryable_error_class(value: Any) -> Any:
    # Checked before the enum parses it, so a typo gets the short list of what is allowed
    # here rather than every error class (most of which a retry cannot fix).
    if not isinstance(value, str) or value not in RETRYABLE_ERROR_CLASSES:
        raise ValueError(f"Input should be {_RETRY_ON_CHOICES} (failures a retry can fix)")
    return value


# An ErrorClass, limited to RETRYABLE_ERROR_CLASSES: the config cannot drift from the enum.
RetryableErrorClass = Annotated[ErrorClass, BeforeValidator(_retryable_error_class)]


class RetryConfig(_Strict):
    """Retry policy of one upstream (see docs/configuration.md)."""

    max_attempts: int = Field(3, ge=1, le=10)
    base_backoff_s: PositiveFloat = 0.05
    max_backoff_s: PositiveFloat = 2.0
    retry_on: frozenset[RetryableErrorClass] = RETRYABLE_ERROR_CLASSES
    retry_on_statuses: frozenset[Annotated[int, Field(ge=400, le=599)]] = frozenset(
        {429, 502, 503, 504}
    )
    retry_after_max_s: NonNegFloat = 10.0
    respect_retry_after: bool = True
    retry_non_idempotent: Literal["never", "with_idempotency_key"] = "with_idempotency_key"


class RetryBudgetConfig(_Strict):
    """Retries as a share of requests: a failing upstream never sees its load multiplied."""

    ratio: Annotated[float, Field(ge=0, le=1)] = 0.2
    min_retries_per_s: NonNegFloat = 1.0
    ttl_s: PositiveFloat = 10.0


class BreakerConfig(_Strict):
    """Circuit breaker of one upstream (resilience4j semantics, plus a half-open maximum wait)."""

    enabled: bool = True
    window_type: Literal["count", "time"] = "count"
    window_size_calls: int = Field(50, ge=1)
    window_duration_s: PositiveFloat = 30.0
    minimum_calls: int = Field(10, ge=1)
    failure_rate_threshold: Ratio = 0.5
    slow_call_rate_threshold: Ratio = 1.0
    slow_call_duration_s: PositiveFloat = 5.0
    wait_in_open_s: PositiveFloat = 5.0
    wait_in_open_multiplier: Annotated[float, Field(ge=1)] = 1.0
    max_wait_in_open_s: PositiveFloat = 60.0
    permitted_calls_in_half_open: int = Field(3, ge=1)
    max_wait_in_half_open_s: PositiveFloat = 30.0


class RateLimitConfig(_Strict):
    """Token bucket in front of one upstream. ``rate_per_s = 0`` means unlimited."""

    rate_per_s: NonNegFloat = 0.0
    burst: int = Field(50, ge=1)


class BulkheadConfig(_Strict):
    """Bound on concurrent calls to one upstream."""

    max_concurrent: int = Field(64, ge=1)


# What may mark a key done, beside the outcome names: http_error split by status class, with
# 408 and 429 apart ("try again later": the upstream decided nothing about the request).
COMPLETION_CLASSES = ("http_4xx", "http_5xx", "http_408_429")
_COMPLETABLE = sorted(
    {o.value for o in Outcome}
    - {Outcome.INVALID, Outcome.DUPLICATE_SKIPPED, Outcome.DUPLICATE_IN_PROGRESS,
       Outcome.LEDGER_UNAVAILABLE, Outcome.HTTP_ERROR}
) + list(COMPLETION_CLASSES)


class IdempotencyConfig(_Strict):
    """The ledger's policy for one upstream (docs/configuration.md, "Idempotency ledger").

    ``completed_on``: the outcomes after which a key is done, so a redelivery or a replay
    does not call again. The default keeps only answers the upstream gave on purpose
    (success, and 4xx: it refused this request and would refuse it again); a 5xx, a
    timeout or a refusal by NetScope releases the key, so a replay of the incident window
    calls it again, with the same ``Idempotency-Key`` header for upstreams that dedupe.
    """

    enabled: bool = True
    completed_on: frozenset[str] = frozenset({"success", "http_4xx"})
    ttl_s: PositiveFloat = 86_400.0

    @field_validator("completed_on")
    @classmethod
    def _known(cls, value: frozenset[str]) -> frozenset[str]:
        unknown = sorted(value - set(_COMPLETABLE))
        if unknown:
            raise ValueError(f"unknown {unknown}; choose from {', '.join(_COMPLETABLE)}")
        return value


class UpstreamConfig(_Strict):
    """One allow-listed upstream. Messages name it; they never carry a URL."""

    base_url: str
    connect_timeout_s: PositiveFloat = 1.0
    read_timeout_s: PositiveFloat = 5.0
    deadline_s: PositiveFloat = 15.0
    max_request_bytes: int = Field(1 << 20, ge=0)
    max_response_bytes: int = Field(1 << 20, ge=0)
    max_connections: int = Field(100, ge=1)
    # The HTTP client library (outbound/transports/): "aiohttp" (pure Python) or "reqwest"
    # (pyreqwest, Rust). Both honour the same contract; tests run each against the same cases.
    transport: Literal["aiohttp", "reqwest"] = "aiohttp"
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, SecretStr] = Field(default_factory=dict)
    # "wait" by default: a backlog wider than the bulkhead must slow down, not be rejected.
    on_saturation: Literal["reject", "wait"] = "wait"
    max_saturation_wait_s: NonNegFloat = 1.0
    # The team's p95 target for this upstream (consume-to-outcome, retries included): what
    # `netscope check` and section 8's latency alert compare the p95 with. Not enforced.
    latency_p95_target_s: PositiveFloat = 1.0
    retry: RetryConfig = RetryConfig()
    retry_budget: RetryBudgetConfig = RetryBudgetConfig()
    breaker: BreakerConfig = BreakerConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    bulkhead: BulkheadConfig = BulkheadConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL, e.g. https://api.example.com")
        if parts.username or parts.password:
            raise ValueError("must not embed credentials; use secret_headers")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator("transport")
    @classmethod
    def _transport_installed(cls, value: str) -> str:
        if value == "reqwest" and importlib.util.find_spec("pyreqwest") is None:
            raise ValueError('pyreqwest is not installed: install it, or use "aiohttp"')
        return value

    @model_validator(mode="after")
    def _deadline_covers_one_try(self) -> UpstreamConfig:
        if self.deadline_s < self.connect_timeout_s:
            raise ValueError("deadline_s must be >= connect_timeout_s")
        return self

    @model_validator(mode="after")
    def _policies_construct(self) -> UpstreamConfig:
        # The pure resilience classes hold cross-field rules (e.g. minimum_calls within a
        # count window); checking them here makes `check-config` and start agree.
        from netscope.resilience.breaker import BreakerConfig as _Breaker
        from netscope.resilience.budget import RetryBudgetConfig as _Budget
        from netscope.resilience.retry import RetryPolicy as _Retry

        breaker = self.breaker.model_dump()
        breaker.pop("enabled")
        for name, build in (
            ("retry", lambda: _Retry(**self.retry.model_dump())),
            ("retry_budget", lambda: _Budget(**self.retry_budget.model_dump())),
            ("breaker", lambda: _Breaker(**breaker)),
        ):
            try:
                build()
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return self

    @property
    def per_try_timeout_s(self) -> float:
        return self.connect_timeout_s + self.read_timeout_s


class KafkaConfig(_Strict):
    bootstrap_servers: str = "127.0.0.1:9092"
    requests_topic: str = "netscope.requests"
    dead_letter_topic: str = "netscope.requests.dlq"
    group_id: str = "netscope"
    client_id: str = "netscope"
    session_timeout_s: Annotated[float, Field(ge=1, le=300)] = 10.0
    max_poll_records: int = Field(500, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None


class PipelineConfig(_Strict):
    queue_depth: int = Field(2000, ge=1)
    max_in_flight: int = Field(256, ge=1)
    commit_interval_s: PositiveFloat = 1.0
    drain_timeout_s: PositiveFloat = 30.0
    # On stop, how long the audit may take to make the drained work durable (store or spool)
    # before NetScope gives up on the rest; it is not committed, so Kafka redelivers it.
    flush_timeout_s: PositiveFloat = 10.0
    max_message_bytes: int = Field(1 << 20, ge=1024)
    ingest_rate_per_s: NonNegFloat = 0.0
    # Like Kafka Connect's initial_state=PAUSED: join the group but take nothing until an
    # operator lifts it (`netscope admin throttle off`), e.g. so every worker of a group has
    # its partitions before a backlog is consumed.
    start_paused: bool = False


class S3Config(_Strict):
    endpoint: str = "http://127.0.0.1:7480"
    bucket: str = "netscope-audit"
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    access_key_id_file: Path | None = None
    secret_access_key_file: Path | None = None


class LocalStoreConfig(_Strict):
    path: Path = Path("var/audit")


class SpoolConfig(_Strict):
    path: Path = Path("var/spool")
    capacity_bytes: int = Field(1 << 30, ge=1 << 20)
    free_disk_floor_bytes: int = Field(512 << 20, ge=0)
    segment_max_bytes: int = Field(8 << 20, ge=1 << 16)
    drain_initial_backoff_s: PositiveFloat = 0.5
    drain_max_backoff_s: PositiveFloat = 30.0


class AuditConfig(_Strict):
    backend: Literal["local", "s3"] = "local"
    prefix: str = "audit"
    compression: Literal["gzip", "none"] = "gzip"
    batch_max_records: int = Field(1000, ge=1)
    batch_max_bytes: int = Field(4 << 20, ge=1024)
    batch_max_delay_s: PositiveFloat = 0.25
    write_timeout_s: PositiveFloat = 5.0
    local: LocalStoreConfig = LocalStoreConfig()
    s3: S3Config = S3Config()
    spool: SpoolConfig = SpoolConfig()

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or ".." in value.split("/"):
            raise ValueError("must be a non-empty key prefix without '..'")
        return value


class LedgerConfig(_Strict):
    """Where the idempotency ledger lives (docs/configuration.md, "Idempotency ledger").

    ``sqlite`` (default) is a file beside the spool: one host. ``postgresql`` is shared by
    every instance of a consumer group and by ``netscope replay``. ``none`` turns the ledger
    off: redeliveries and replays call the upstream again (with the same Idempotency-Key).
    """

    backend: Literal["sqlite", "postgresql", "none"] = "sqlite"
    path: Path | None = None  # SQLite file; default: ledger.sqlite3 beside audit.spool.path
    dsn: str = "postgresql://netscope@127.0.0.1:5432/netscope"
    password: SecretStr | None = None
    password_file: Path | None = None
    pool_max_size: int = Field(10, ge=1, le=200)
    statement_timeout_s: PositiveFloat = 2.0
    connect_timeout_s: PositiveFloat = 5.0
    # Added to the upstream's deadline_s for the lease. Small on purpose: after a crash the
    # group needs at least the session timeout to redeliver, and a redelivered message only
    # takes an orphaned key over if the lease ends within its own deadline (beyond the
    # margin, it ends duplicate_in_progress, uncalled). Room for the settle and clock skew.
    lease_margin_s: PositiveFloat = 2.0
    retry_interval_s: PositiveFloat = 0.5  # between claims while the ledger is unreachable
    max_batch: int = Field(500, ge=1)
    sweep_interval_s: PositiveFloat = 300.0

    @field_validator("dsn")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        if parts.password:
            raise ValueError("must not embed a password; use ledger.password(_file)")
        return value


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    admin_token: SecretStr | None = None
    admin_token_file: Path | None = None
    ws_token: SecretStr | None = None
    ws_client_queue: int = Field(1000, ge=1)
    ws_heartbeat_s: PositiveFloat = 10.0

    @field_validator("admin_token", "ws_token")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token (an unset variable in a compose file, say) must not mean "no token":
        # for the stream that would silently open it to anyone.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty (leave it unset to turn it off)")
        return value


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Settings(BaseSettings):
    """The whole configuration. Load it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="NETSCOPE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    instance_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    kafka: KafkaConfig = KafkaConfig()
    pipeline: PipelineConfig = PipelineConfig()
    audit: AuditConfig = AuditConfig()
    ledger: LedgerConfig = LedgerConfig()
    api: ApiConfig = ApiConfig()
    logging: LoggingConfig = LoggingConfig()
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)

    @field_validator("upstreams")
    @classmethod
    def _upstream_names(cls, value: dict[str, UpstreamConfig]) -> dict[str, UpstreamConfig]:
        for name in value:
            if not UPSTREAM_NAME.match(name):
                raise ValueError(
                    f"upstream name {name!r} must match {UPSTREAM_NAME.pattern} "
                    "(lowercase letters, digits, '-' and '_')"
                )
        return value

    @model_validator(mode="after")
    def _s3_needs_credentials(self) -> Settings:
        if self.audit.backend == "s3":
            s3 = self.audit.s3
            if s3.access_key_id is None and s3.access_key_id_file is None:
                raise ValueError("audit.s3.access_key_id (or access_key_id_file) is required")
            if s3.secret_access_key is None and s3.secret_access_key_file is None:
                raise ValueError(
                    "audit.s3.secret_access_key (or secret_access_key_file) is required"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Env over file: init_settings carries the parsed TOML (see load_settings).
        return (env_settings, init_settings)


class ConfigError(Exception):
    """A configuration that cannot start NetScope; ``problems`` are (key path, reason) pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str) -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {key}: {reason}" for key, reason in problems)
        super().__init__(f"invalid configuration ({source}):\n{lines}")


_SECRETISH = re.compile(r"(secret|token|password|key|auth)", re.IGNORECASE)
# A URL with userinfo ("http://user:pass@host") or a query ("?api_key=...") is exactly the value
# base_url rejects, and exactly where a credential hides: never echo it.
_URL_MAY_HOLD_SECRET = re.compile(r"://.*[@?#]")


def _describe(error: Any) -> tuple[str, str]:
    loc = ".".join(str(part) for part in error["loc"]) or "(root)"
    reason = str(error["msg"])
    if reason.startswith("Value error, "):
        reason = reason[len("Value error, ") :]
    value = error.get("input")
    # Echo the offending value only when it is a short scalar under a harmless key: a secret
    # must never reach a terminal or a log, even when it is the value that failed.
    if (
        isinstance(value, int | float | bool | str)
        and len(str(value)) <= 80
        and not _SECRETISH.search(loc)
        and error["type"] != "extra_forbidden"
        and not _URL_MAY_HOLD_SECRET.search(str(value))
    ):
        reason = f"{reason} (got {value!r})"
    return loc, reason


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the TOML file (if any), apply ``NETSCOPE_*`` overrides, validate, load secret files.

    Raises :class:`ConfigError` naming every bad key and why.
    """
    source = str(path) if path else "defaults + environment"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([("(file)", f"{path} does not exist")], source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([("(file)", f"not valid TOML: {exc}")], source) from None
    environ = os.environ if env is None else env
    unknown = [
        (name, "unknown setting: no such key (nested keys use '__', e.g. NETSCOPE_KAFKA__GROUP_ID)")
        for name in environ
        # pydantic-settings matches names case-insensitively, so the check must too.
        if name.upper().startswith("NETSCOPE_")
        and name[len("NETSCOPE_") :].split("__")[0].lower() not in Settings.model_fields
    ]
    if unknown:
        raise ConfigError(unknown, source)
    saved_environ = None
    if env is not None:
        saved_environ = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()], source) from None
    finally:
        if saved_environ is not None:
            os.environ.clear()
            os.environ.update(saved_environ)
    return _resolve_secret_files(settings, source)


def _read_secret(path: Path, key: str, source: str) -> SecretStr:
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError([(key, f"cannot read secret file: {exc.strerror}")], source) from None


def _resolve_secret_files(settings: Settings, source: str) -> Settings:
    s3 = settings.audit.s3
    s3_updates: dict[str, SecretStr] = {}
    if s3.access_key_id_file and s3.access_key_id is None:
        s3_updates["access_key_id"] = _read_secret(
            s3.access_key_id_file, "audit.s3.access_key_id_file", source
        )
    if s3.secret_access_key_file and s3.secret_access_key is None:
        s3_updates["secret_access_key"] = _read_secret(
            s3.secret_access_key_file, "audit.s3.secret_access_key_file", source
        )
    api = settings.api
    api_updates: dict[str, SecretStr] = {}
    if api.admin_token_file and api.admin_token is None:
        api_updates["admin_token"] = _read_secret(
            api.admin_token_file, "api.admin_token_file", source
        )
        if not api_updates["admin_token"].get_secret_value():
            raise ConfigError([("api.admin_token_file", "the file is empty")], source)
    kafka = settings.kafka
    kafka_updates: dict[str, SecretStr] = {}
    if kafka.sasl_password_file and kafka.sasl_password is None:
        kafka_updates["sasl_password"] = _read_secret(
            kafka.sasl_password_file, "kafka.sasl_password_file", source
        )
    ledger = settings.ledger
    ledger_updates: dict[str, SecretStr] = {}
    if ledger.password_file and ledger.password is None:
        ledger_updates["password"] = _read_secret(
            ledger.password_file, "ledger.password_file", source
        )
    if not (s3_updates or api_updates or kafka_updates or ledger_updates):
        return settings
    audit = settings.audit.model_copy(update={"s3": s3.model_copy(update=s3_updates)})
    return settings.model_copy(
        update={
            "audit": audit,
            "api": api.model_copy(update=api_updates),
            "kafka": kafka.model_copy(update=kafka_updates),
            "ledger": ledger.model_copy(update=ledger_updates),
        }
    )
