"""Configuration loading: TOML + NETSCOPE_* environment, strict keys, secrets kept secret."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from netscope.config import ConfigError, Settings, load_settings
from netscope.contract.outcomes import ErrorClass
from netscope.resilience.retry import RETRYABLE_ERROR_CLASSES

REPO_ROOT = Path(__file__).parents[2]
SECRET = "hunter2-Sup3r-Secret-value"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "netscope.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str = "", env: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, text), env=env or {})


def config_error(tmp_path: Path, text: str = "", env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return info.value


def full_error_text(error: ConfigError) -> str:
    """Everything an operator could ever see: message, problems, printed traceback."""
    return "\n".join(
        [str(error), repr(error), repr(error.problems), *traceback.format_exception(error)]
    )


# --------------------------------------------------------------------------- loading


def test_defaults_load_without_a_file() -> None:
    settings = load_settings(None, env={})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.requests_topic == "netscope.requests"
    assert settings.kafka.dead_letter_topic == "netscope.requests.dlq"
    assert settings.pipeline.max_message_bytes == 1 << 20
    assert settings.audit.backend == "local"
    assert settings.audit.prefix == "audit"
    assert settings.api.port == 8080
    assert settings.api.admin_token is None
    assert settings.logging.level == "info"
    assert settings.upstreams == {}
    assert settings.instance_id


def test_toml_file_loads(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
instance_id = "ns-1"
[kafka]
bootstrap_servers = "kafka-1:9092,kafka-2:9092"
group_id = "netscope-test"
[pipeline]
max_in_flight = 16
[audit]
prefix = "/audit/prod/"
[upstreams.payments]
base_url = "http://127.0.0.1:8081/"
deadline_s = 3.0
headers = { "X-Client" = "netscope" }
[upstreams.payments.retry]
max_attempts = 5
retry_on_statuses = [503]
[upstreams.payments.breaker]
window_type = "time"
""",
    )
    assert settings.instance_id == "ns-1"
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.kafka.group_id == "netscope-test"
    assert settings.kafka.client_id == "netscope"  # untouched keys keep their defaults
    assert settings.pipeline.max_in_flight == 16
    assert settings.audit.prefix == "audit/prod"  # slashes stripped
    payments = settings.upstreams["payments"]
    assert payments.base_url == "http://127.0.0.1:8081"  # trailing slash stripped
    assert payments.deadline_s == 3.0
    assert payments.headers == {"X-Client": "netscope"}
    assert payments.retry.max_attempts == 5
    assert payments.retry.retry_on_statuses == frozenset({503})
    assert payments.retry.base_backoff_s == 0.05
    assert payments.breaker.window_type == "time"
    assert payments.per_try_timeout_s == 6.0


def test_env_overrides_file(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[kafka]\nbootstrap_servers = "from-file:9092"\ngroup_id = "file-group"\n',
        env={"NETSCOPE_KAFKA__BOOTSTRAP_SERVERS": "from-env:9092"},
    )
    assert settings.kafka.bootstrap_servers == "from-env:9092"
    assert settings.kafka.group_id == "file-group"  # env merges, it does not replace the table


def test_env_overrides_a_nested_upstream_key(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[upstreams.search]\nbase_url = "http://127.0.0.1:8081"\n',
        env={"NETSCOPE_UPSTREAMS__SEARCH__READ_TIMEOUT_S": "0.5"},
    )
    assert settings.upstreams["search"].read_timeout_s == 0.5
    assert settings.upstreams["search"].base_url == "http://127.0.0.1:8081"


def test_env_argument_replaces_process_environment_only_for_the_call(tmp_path: Path) -> None:
    before = dict(os.environ)
    settings = load(tmp_path, env={"NETSCOPE_API__PORT": "9999"})
    assert settings.api.port == 9999
    assert dict(os.environ) == before


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "absent.toml", env={})
    assert info.value.problems[0][0] == "(file)"
    assert "does not exist" in str(info.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[kafka\n")
    assert error.problems[0][0] == "(file)"
    assert "not valid TOML" in error.problems[0][1]


# --------------------------------------------------------------------------- unknown keys


def test_unknown_key_in_file_names_its_path(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[kafka]\nbogus = 1\n")
    assert [key for key, _ in error.problems] == ["kafka.bogus"]
    assert "kafka.bogus" in str(error)
    assert str(write(tmp_path, "")) in str(error)  # the source file is named too


def test_unknown_key_in_upstream_policy_names_its_path(tmp_path: Path) -> None:
    error = config_error(
        tmp_path, '[upstreams.a]\nbase_url = "http://x"\n[upstreams.a.breaker]\nthreshold = 1\n'
    )
    assert [key for key, _ in error.problems] == ["upstreams.a.breaker.threshold"]


def test_unknown_top_level_section(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[kafak]\nbootstrap_servers = 'x'\n")
    assert [key for key, _ in error.problems] == ["kafak"]


def test_unknown_env_var_is_named(tmp_path: Path) -> None:
    error = config_error(tmp_path, env={"NETSCOPE_NOPE": "1"})
    assert error.problems[0][0] == "NETSCOPE_NOPE"
    assert "NETSCOPE_NOPE" in str(error)
    assert "unknown setting" in str(error)


def test_unknown_env_var_is_named_whatever_its_case(tmp_path: Path) -> None:
    # pydantic-settings reads NETSCOPE_* case-insensitively; a lowercase typo must not slip by.
    error = config_error(tmp_path, env={"netscope_nope": "1"})
    assert error.problems[0][0] == "netscope_nope"


def test_admin_token_env_var_configures_the_service(tmp_path: Path) -> None:
    # The CLI's `netscope admin` reads the same variable, so one export serves both.
    settings = load_settings(None, env={"NETSCOPE_API__ADMIN_TOKEN": "t0k"})
    assert settings.api.admin_token is not None
    assert settings.api.admin_token.get_secret_value() == "t0k"


def test_unknown_nested_env_var_is_named(tmp_path: Path) -> None:
    error = config_error(tmp_path, env={"NETSCOPE_KAFKA__BOGUS": "1"})
    assert [key for key, _ in error.problems] == ["kafka.bogus"]


def test_unrelated_env_vars_are_ignored(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"PATH": "/bin", "KAFKA__BOGUS": "1", "NETSCOPEX": "1"})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"


# --------------------------------------------------------------------------- bad values


def test_bad_value_shows_key_reason_and_value(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[pipeline]\nqueue_depth = 0\n")
    assert error.problems == [
        ("pipeline.queue_depth", "Input should be greater than or equal to 1 (got 0)")
    ]
    assert "pipeline.queue_depth: Input should be greater than or equal to 1 (got 0)" in str(error)


def test_bad_env_value_shows_key_reason_and_value(tmp_path: Path) -> None:
    error = config_error(tmp_path, env={"NETSCOPE_KAFKA__AUTO_OFFSET_RESET": "oldest"})
    ((key, reason),) = error.problems
    assert key == "kafka.auto_offset_reset"
    assert "'earliest' or 'latest'" in reason
    assert "(got 'oldest')" in reason


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    error = config_error(
        tmp_path, "[api]\nport = 70000\n[logging]\nlevel = 'loud'\n[kafka]\nbogus = 1\n"
    )
    assert {key for key, _ in error.problems} == {"api.port", "logging.level", "kafka.bogus"}


def test_bad_retry_policy_values(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        '[upstreams.a]\nbase_url = "http://x"\n'
        '[upstreams.a.retry]\nmax_attempts = 0\nretry_on = ["nope"]\nretry_on_statuses = [200]\n',
    )
    assert {key for key, _ in error.problems} == {
        "upstreams.a.retry.max_attempts",
        "upstreams.a.retry.retry_on.0",
        "upstreams.a.retry.retry_on_statuses.0",
    }


def test_retry_on_loads_as_error_classes(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[upstreams.a]\nbase_url = "http://x"\n'
        '[upstreams.a.retry]\nretry_on = ["timeout_connect", "connection_reset"]\n',
    )
    retry_on = settings.upstreams["a"].retry.retry_on
    assert retry_on == {ErrorClass.TIMEOUT_CONNECT, ErrorClass.CONNECTION_RESET}
    assert all(type(c) is ErrorClass for c in retry_on)
    assert load(tmp_path, '[upstreams.a]\nbase_url = "http://x"\n').upstreams[
        "a"
    ].retry.retry_on == RETRYABLE_ERROR_CLASSES


@pytest.mark.parametrize(
    "value",
    [
        "nope",
        "timeout_reed",
        # Real error classes a retry cannot fix: the enum alone would accept them.
        "protocol_error",
        "deadline_exceeded",
        "circuit_open",
    ],
)
def test_retry_on_refuses_what_a_retry_cannot_fix(tmp_path: Path, value: str) -> None:
    error = config_error(
        tmp_path,
        f'[upstreams.a]\nbase_url = "http://x"\n[upstreams.a.retry]\nretry_on = ["{value}"]\n',
    )
    ((key, reason),) = error.problems
    assert key == "upstreams.a.retry.retry_on.0"
    assert "'connect_error', 'connection_reset', 'timeout_connect' or 'timeout_read'" in reason
    assert f"(got '{value}')" in reason


def test_retry_on_env_override_is_validated_too(tmp_path: Path) -> None:
    env = {"NETSCOPE_UPSTREAMS__A__RETRY__RETRY_ON": '["timeout_read", "http_error"]'}
    error = config_error(tmp_path, '[upstreams.a]\nbase_url = "http://x"\n', env=env)
    ((key, reason),) = error.problems
    assert key == "upstreams.a.retry.retry_on.1"
    assert "(got 'http_error')" in reason


@pytest.mark.parametrize("prefix", ["", "/", "a/../b", ".."])
def test_bad_audit_prefix(tmp_path: Path, prefix: str) -> None:
    error = config_error(tmp_path, f'[audit]\nprefix = "{prefix}"\n')
    assert error.problems[0][0] == "audit.prefix"
    assert "non-empty key prefix" in error.problems[0][1]


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        (f"[audit.s3]\nsecret_access_key = [{SECRET!r}]\n", "audit.s3.secret_access_key"),
        (f"[audit.s3]\nsecret_access_key = {{ v = {SECRET!r} }}\n", "audit.s3.secret_access_key"),
        ("[audit.s3]\nsecret_access_key = 314159265358979\n", "audit.s3.secret_access_key"),
        ("[audit.s3]\naccess_key_id = 314159265358979\n", "audit.s3.access_key_id"),
        ("[api]\nadmin_token = 314159265358979\n", "api.admin_token"),
        ("[api]\nws_token = 314159265358979\n", "api.ws_token"),
        ("[kafka]\nsasl_password = 314159265358979\n", "kafka.sasl_password"),
        (
            '[upstreams.a]\nbase_url = "http://x"\nsecret_headers = { X-Api = 314159265358979 }\n',
            "upstreams.a.secret_headers.X-Api",
        ),
    ],
)
def test_bad_secret_value_never_appears_in_the_error(tmp_path: Path, toml: str, key: str) -> None:
    error = config_error(tmp_path, toml)
    assert key in [k for k, _ in error.problems]
    text = full_error_text(error)
    assert SECRET not in text
    assert "314159265358979" not in text


@pytest.mark.parametrize(
    "base_url",
    [
        f"https://svc:{SECRET}@api.example.com",
        f"https://api.example.com/v1?api_key={SECRET}",
        f"https://api.example.com/v1#{SECRET}",
    ],
)
def test_base_url_carrying_a_credential_is_rejected_without_echoing_it(
    tmp_path: Path, base_url: str
) -> None:
    error = config_error(tmp_path, f'[upstreams.a]\nbase_url = "{base_url}"\n')
    assert error.problems[0][0] == "upstreams.a.base_url"
    assert SECRET not in full_error_text(error)


def test_secrets_never_appear_in_repr_or_str(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        f"""
[kafka]
sasl_password = "{SECRET}-kafka"
[audit]
backend = "s3"
[audit.s3]
access_key_id = "{SECRET}-akid"
secret_access_key = "{SECRET}-sak"
[api]
admin_token = "{SECRET}-admin"
ws_token = "{SECRET}-ws"
[upstreams.a]
base_url = "http://127.0.0.1:8081"
secret_headers = {{ Authorization = "Bearer {SECRET}-hdr" }}
""",
    )
    for text in (repr(settings), str(settings), repr(settings.audit), str(settings.upstreams)):
        assert SECRET not in text
    # ...yet they are there for the code that needs them.
    assert settings.audit.s3.secret_access_key is not None
    assert settings.audit.s3.secret_access_key.get_secret_value() == f"{SECRET}-sak"
    assert settings.api.admin_token is not None
    assert settings.api.admin_token.get_secret_value() == f"{SECRET}-admin"
    auth = settings.upstreams["a"].secret_headers["Authorization"]
    assert auth.get_secret_value() == f"Bearer {SECRET}-hdr"


def test_secret_from_env(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[audit]\nbackend = "s3"\n[audit.s3]\naccess_key_id = "AKID"\n',
        env={"NETSCOPE_AUDIT__S3__SECRET_ACCESS_KEY": SECRET},
    )
    assert settings.audit.s3.secret_access_key is not None
    assert settings.audit.s3.secret_access_key.get_secret_value() == SECRET
    assert SECRET not in repr(settings)


def test_secret_files_are_read(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "akid").write_text("AKID-from-file\n")
    (secrets / "sak").write_text(f"  {SECRET}\n")
    (secrets / "admin").write_text("admin-from-file")
    (secrets / "sasl").write_text("sasl-from-file\n")
    settings = load(
        tmp_path,
        f"""
[kafka]
sasl_password_file = "{secrets / "sasl"}"
[audit]
backend = "s3"
[audit.s3]
access_key_id_file = "{secrets / "akid"}"
secret_access_key_file = "{secrets / "sak"}"
[api]
admin_token_file = "{secrets / "admin"}"
""",
    )
    s3 = settings.audit.s3
    assert s3.access_key_id is not None and s3.access_key_id.get_secret_value() == "AKID-from-file"
    assert s3.secret_access_key is not None
    assert s3.secret_access_key.get_secret_value() == SECRET  # surrounding whitespace stripped
    assert settings.api.admin_token is not None
    assert settings.api.admin_token.get_secret_value() == "admin-from-file"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "sasl-from-file"
    assert SECRET not in repr(settings)


def test_inline_secret_wins_over_its_file(tmp_path: Path) -> None:
    (tmp_path / "admin").write_text("from-file")
    settings = load(
        tmp_path, f'[api]\nadmin_token = "inline"\nadmin_token_file = "{tmp_path / "admin"}"\n'
    )
    assert settings.api.admin_token is not None
    assert settings.api.admin_token.get_secret_value() == "inline"


def test_unreadable_secret_file_names_its_key(tmp_path: Path) -> None:
    error = config_error(tmp_path, f'[api]\nadmin_token_file = "{tmp_path / "missing"}"\n')
    assert error.problems[0][0] == "api.admin_token_file"
    assert "cannot read secret file" in error.problems[0][1]


@pytest.mark.parametrize(
    ("s3_table", "missing"),
    [
        ("", "audit.s3.access_key_id"),
        ('access_key_id = "AKID"\n', "audit.s3.secret_access_key"),
        ('secret_access_key = "SAK"\n', "audit.s3.access_key_id"),
    ],
)
def test_s3_backend_requires_credentials(tmp_path: Path, s3_table: str, missing: str) -> None:
    error = config_error(tmp_path, f'[audit]\nbackend = "s3"\n[audit.s3]\n{s3_table}')
    assert f"{missing} (or {missing.rsplit('.', 1)[1]}_file) is required" in str(error)


def test_local_backend_needs_no_credentials(tmp_path: Path) -> None:
    assert load(tmp_path, '[audit]\nbackend = "local"\n').audit.s3.access_key_id is None


# --------------------------------------------------------------------------- upstreams


@pytest.mark.parametrize("name", ["Payments", "-x", "a.b", "a b", "x" * 65, "é"])
def test_invalid_upstream_name(tmp_path: Path, name: str) -> None:
    error = config_error(tmp_path, f'[upstreams."{name}"]\nbase_url = "http://x"\n')
    assert error.problems[0][0] == "upstreams"
    assert repr(name) in error.problems[0][1]
    assert "must match" in error.problems[0][1]


@pytest.mark.parametrize("name", ["payments", "search-v2", "a", "0_x", "x" * 64])
def test_valid_upstream_names(tmp_path: Path, name: str) -> None:
    settings = load(tmp_path, f'[upstreams."{name}"]\nbase_url = "http://x"\n')
    assert name in settings.upstreams


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://user:pass@api.example.com", "must not embed credentials"),
        ("http://user@api.example.com", "must not embed credentials"),
        ("https://api.example.com/?a=1", "must not carry a query or fragment"),
        ("https://api.example.com/#top", "must not carry a query or fragment"),
        ("ftp://api.example.com", "absolute http(s) URL"),
        ("api.example.com", "absolute http(s) URL"),
        ("/v1", "absolute http(s) URL"),
        ("http://", "absolute http(s) URL"),
    ],
)
def test_bad_base_url_is_rejected(tmp_path: Path, base_url: str, reason: str) -> None:
    error = config_error(tmp_path, f'[upstreams.a]\nbase_url = "{base_url}"\n')
    assert error.problems[0][0] == "upstreams.a.base_url"
    assert reason in error.problems[0][1]


def test_upstream_requires_base_url(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[upstreams.a]\ndeadline_s = 3\n")
    assert error.problems[0][0] == "upstreams.a.base_url"


def test_deadline_shorter_than_connect_timeout_is_rejected(tmp_path: Path) -> None:
    error = config_error(
        tmp_path,
        '[upstreams.a]\nbase_url = "http://x"\nconnect_timeout_s = 2.0\ndeadline_s = 1.0\n',
    )
    assert error.problems == [("upstreams.a", "deadline_s must be >= connect_timeout_s")]


def test_deadline_equal_to_connect_timeout_is_accepted(tmp_path: Path) -> None:
    settings = load(
        tmp_path, '[upstreams.a]\nbase_url = "http://x"\nconnect_timeout_s = 2\ndeadline_s = 2\n'
    )
    assert settings.upstreams["a"].deadline_s == 2.0


# --------------------------------------------------------------------------- example file


def test_example_config_loads() -> None:
    settings = load_settings(REPO_ROOT / "netscope.example.toml", env={})
    assert set(settings.upstreams) == {"payments", "search"}
    for upstream in settings.upstreams.values():
        assert upstream.base_url == "http://127.0.0.1:8081"


def _keys(model: type, prefix: str = "") -> set[str]:
    """Every leaf key path of a settings model (dict-of-model fields not expanded)."""
    from pydantic import BaseModel

    out: set[str] = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out |= _keys(annotation, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def test_example_config_mentions_every_key() -> None:
    """Every key appears in the example, set or commented out, so the file stays complete."""
    from netscope.config import UpstreamConfig

    text = (REPO_ROOT / "netscope.example.toml").read_text(encoding="utf-8")
    mentioned = set()
    section = ""
    for raw in text.splitlines():
        line = raw.lstrip("# ").strip()
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if "=" in line:
            key = line.split("=", 1)[0].strip()
            if key.replace("_", "").isalnum():
                mentioned.add(f"{section}.{key}" if section else key)
    expected = {k for k in _keys(Settings) if k != "upstreams"}
    expected |= {f"upstreams.payments.{k}" for k in _keys(UpstreamConfig)}
    missing = sorted(expected - mentioned)
    assert not missing, f"netscope.example.toml does not mention: {missing}"


def test_example_config_active_values_are_the_defaults() -> None:
    """The example claims its active values are the defaults: keep that true."""
    from netscope.config import (
        ApiConfig,
        AuditConfig,
        KafkaConfig,
        LoggingConfig,
        PipelineConfig,
        UpstreamConfig,
    )

    settings = load_settings(REPO_ROOT / "netscope.example.toml", env={})
    assert settings.kafka == KafkaConfig()
    assert settings.pipeline == PipelineConfig()
    assert settings.audit == AuditConfig()
    assert settings.api == ApiConfig()
    assert settings.logging == LoggingConfig()
    assert settings.upstreams["payments"] == UpstreamConfig(base_url="http://127.0.0.1:8081")
    assert settings.upstreams["search"] != UpstreamConfig(base_url="http://127.0.0.1:8081")
