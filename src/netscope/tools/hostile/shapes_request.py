"""Hostile shapes of the request's fields: SSRF-shaped paths, upstreams and extra fields,
CR/LF and other control characters, forbidden headers, odd methods and timeouts, broken
traces, oversized ids and headers, wrong types."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson

from netscope.tools.hostile.model import (
    Hostile,
    HostileConfig,
    accepted,
    base,
    nested,
    raw_json,
    register,
    rejected,
)
from netscope.tools.messages import new_traceparent

# -- SSRF: a path, an upstream, a field that tries to name another host -------------------


def _ssrf_paths(canary: str) -> tuple[str, ...]:
    host, _, port = canary.rpartition(":")
    return (
        "http://169.254.169.254/latest/meta-data/",
        f"http://{canary}/x",
        f"https://{canary}/x",
        f"//{canary}/x",
        f"//[::1]:{port}/x",
        f"{canary}/x",
        f"@{canary}/x",
        f"\\\\{host}\\x",
        f"/\\{canary}/x",
        f"/x\\@{canary}",
        "/v1/../../admin",
        "/v1/%2e%2e/admin",
        "/%2E%2e/%2e%2E/etc/passwd",
        "/..%2f..%2fadmin",
        "/.%2e/x",
        "",
        "*",
        "file:///etc/passwd",
        f"gopher://{canary}/_x",
        f"http:/{canary}",
        f"/#@{canary}",
        "/" + "a" * 2048,
    )


@register("ssrf_path")
def _ssrf_path(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    msg["path"] = rand.choice(_ssrf_paths(cfg.canary))
    return rejected("ssrf_path", msg)


def _ssrf_lookalike_paths(canary: str) -> tuple[str, ...]:
    """Legal paths that look like another host: appended to base_url, they stay on it."""
    return (
        f"/%2F%2F{canary}/x",
        f"/@{canary}/x",
        f"/[::1]:{canary.rpartition(':')[2]}/x",
        "/169.254.169.254/latest/meta-data/",
        f"/;@{canary}",
        "/%252e%252e/admin",
        f"/x?url=http://{canary}/&next=//{canary}",
        f"/x?h=%0d%0aHost:%20{canary}",
        "/%00",
        "/%zz/%",
    )


@register("ssrf_lookalike_path")
def _ssrf_lookalike_path(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    msg["path"] = rand.choice(_ssrf_lookalike_paths(cfg.canary))
    return accepted("ssrf_lookalike_path", msg)


@register("ssrf_upstream")
def _ssrf_upstream(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    msg["upstream"] = rand.choice(
        (
            "http://169.254.169.254",
            f"payments@{cfg.canary}",
            "../payments",
            "PAYMENTS",
            "",
            "billing",  # well formed, not configured
            cfg.canary,
            "[::1]",
            5,
        )
    )
    return rejected("ssrf_upstream", msg)


@register("ssrf_extra_field")
def _ssrf_extra_field(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    name = rand.choice(("url", "base_url", "host", "proxy", "Upstream"))
    msg[name] = f"http://{cfg.canary}/"
    return rejected("ssrf_extra_field", msg)


# -- request line and header injection ------------------------------------------------------


@register("control_chars_in_path")
def _control_chars_in_path(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    msg["path"] = "/x" + rand.choice(
        (f"\r\nHost: {cfg.canary}", "\nX: y", "\r", "\x00", "\x85y", "\x9b", " y", "\t", "\x7f")
    )
    return rejected("control_chars_in_path", msg)


@register("control_chars_in_header")
def _control_chars_in_header(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    if rand.random() < 0.6:
        value = rand.choice(("a\r\nX-Injected: 1", "\n", "a\x00b", "a\x85b", "\x7f", "a\rb"))
        msg["headers"] = {"X-Note": value}
    else:
        name = rand.choice(("X-A\r\n", "X A", "X:A", "", "Ä", "X\x00", "X-" + "a" * 127))
        msg["headers"] = {name: "v"}
    return rejected("control_chars_in_header", msg)


_FORBIDDEN = (
    "Host", "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
    "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
    "traceparent", "tracestate", "Idempotency-Key",
)  # fmt: skip


@register("forbidden_header")
def _forbidden_header(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    name = rand.choice(_FORBIDDEN)
    name = "".join(c.upper() if rand.random() < 0.5 else c.lower() for c in name)
    value = rand.choice(("169.254.169.254", "close", "chunked", "0", "h2c", cfg.canary))
    msg["headers"] = {"X-Ok": "1", name: value}
    return rejected("forbidden_header", msg)


@register("odd_headers_accepted")
def _odd_headers_accepted(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """Legal header values and names a proxy might trip on: sent as given."""
    msg = base(rand, cfg)
    msg["headers"] = rand.choice(
        (
            {"X-Note": "caf\u00e9 \u2028 \U0001f600"},
            {"X-Note": "\tv\t", "X-Empty": "", "X-Spaces": "   "},
            {"Expect": "100-continue"},
            {"X-Forwarded-For": "169.254.169.254", "Forwarded": "for=[::1]", "Via": "1.1 x"},
            {"Max-Forwards": "0", "X-Forwarded-Host": cfg.canary},
            {"X-A": "1", "x-a": "2", "X-a": "3"},
            {f"X-{i}": "v" * 200 for i in range(32)},
        )
    )
    return accepted("odd_headers_accepted", msg)


# -- methods, timeouts, traces, sizes, types ------------------------------------------------


@register("odd_method")
def _odd_method(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    msg["method"] = rand.choice(
        ("TRACE", "CONNECT", "get", "Get", "GET ", " GET", "PROPFIND", "", "GET\r\n",
         "\uff27\uff25\uff34", 5, None, ["GET"])
    )  # fmt: skip
    return rejected("odd_method", msg)


@register("edge_method_accepted")
def _edge_method_accepted(rand: random.Random, cfg: HostileConfig) -> Hostile:
    method = rand.choice(("HEAD", "OPTIONS", "DELETE", "GET"))
    msg = base(rand, cfg, method)
    msg.pop("body", None)
    if rand.random() < 0.5:
        msg["body"] = {"with": "a body"}  # a body on a method that rarely has one
    return accepted("edge_method_accepted", msg)


@register("extreme_timeout")
def _extreme_timeout(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    del msg["created_at"]
    extreme = rand.choice(("0", "-1", "600001", str(1 << 63), str(1 << 70), "1e309", '"5000"',
                           "true", "1.5", "1e3", "[]"))  # fmt: skip
    return rejected("extreme_timeout", msg, raw_json(msg, f'"timeout_ms":{extreme}'))


@register("edge_timeout_accepted")
def _edge_timeout_accepted(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    msg["timeout_ms"] = 600_000  # the largest: capped by the upstream's deadline_s
    return accepted("edge_timeout_accepted", msg)


@register("broken_traceparent")
def _broken_traceparent(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    good = new_traceparent(rand)
    msg["traceparent"] = rand.choice(
        (
            "", "00-xyz", f"00-{'0' * 32}-{'1' * 16}-01", f"00-{'1' * 32}-{'0' * 16}-01",
            "ff" + good[2:], good.upper(), good + "-extra", "   ", 5, good.replace("-", "_"),
            "00-" + "\u0661" * 32 + "-" + "1" * 16 + "-01", good[:-1],
        )
    )  # fmt: skip
    return rejected("broken_traceparent", msg)


@register("broken_traceparent_header_accepted")
def _broken_traceparent_header(rand: random.Random, cfg: HostileConfig) -> Hostile:
    """An invalid Kafka ``traceparent`` header is ignored (a new trace), not a rejection."""
    msg = base(rand, cfg)
    del msg["traceparent"]
    garbage = rand.choice((b"", b"\xff\xfe", b"00-xyz", b"ff-" + b"a" * 50, b"0" * 4096, None))
    return replace(
        accepted("broken_traceparent_header_accepted", msg),
        headers=(("traceparent", garbage), ("traceparent", new_traceparent(rand).encode())),
    )


@register("oversized_ids")
def _oversized_ids(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    name = rand.choice(("request_id", "idempotency_key"))
    msg[name] = rand.choice(("r" * 257, "k" * 10_000, "a b", "caf\u00e9", "", "\x00"))
    return rejected("oversized_ids", msg)


@register("oversized_headers")
def _oversized_headers(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    msg["headers"] = rand.choice(
        (
            {f"X-{i}": "v" for i in range(33)},
            {f"X-{i}": "v" for i in range(10_000)},
            {"X-Big": "v" * 8200},
            {f"X-{i}": "v" * 400 for i in range(21)},  # 8.4 KB together
            {"X-Huge": "v" * 100_000},
        )
    )
    return rejected("oversized_headers", msg)


@register("wrong_types")
def _wrong_types(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    name, bad = rand.choice(
        (
            ("request_id", 5), ("path", ["/x"]), ("headers", ["X-A"]), ("headers", None),
            ("headers", {"X-Count": 3}), ("body_b64", 5), ("schema_version", "1"),
            ("schema_version", True), ("schema_version", 1.0), ("created_at", 1714560000),
            ("created_at", "yesterday"), ("created_at", "2024-13-01T00:00:00Z"),
            ("idempotency_key", 7),
        )
    )  # fmt: skip
    msg[name] = bad
    return rejected("wrong_types", msg)


@register("bad_body_b64")
def _bad_body_b64(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg, "POST")
    b64 = rand.choice(("!!", "AAA", "aGk=\n", "aGk", "=" * 8, "\u00e9"))
    if rand.random() < 0.3:
        b64 = "aGk="  # valid alone, but exclusive with body
    else:
        del msg["body"]
    msg["body_b64"] = b64
    return rejected("bad_body_b64", msg)


@register("unknown_fields")
def _unknown_fields(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg)
    shape = rand.random()
    if shape < 0.4:
        msg |= {f"extra_{i}": i for i in range(rand.choice((1, 100, 5000)))}
    elif shape < 0.7:
        msg["n" * rand.choice((300, 50_000))] = 1  # a field path longer than any header
    else:
        msg["schema_version"] = rand.choice((0, 2, 99, -1))
    return rejected("unknown_fields", msg)


@register("deep_body_accepted")
def _deep_body_accepted(rand: random.Random, cfg: HostileConfig) -> Hostile:
    msg = base(rand, cfg, "POST")
    msg["body"] = orjson.loads(nested(64, rand))
    return accepted("deep_body_accepted", msg)
