"""Schemathesis checks of NetScope's own rules, loaded by ``st run`` (SCHEMATHESIS_HOOKS).

Schemathesis knows what the OpenAPI document promises; these add what it cannot know: how
an admin endpoint must refuse (ST_EXPECT_ADMIN: ``refused`` -> 401 ``unauthorized`` or 429
with Retry-After; ``disabled`` -> 403; ``authorized`` -> never 401/403), and that no answer
ever echoes the admin token (ST_SECRET).
"""

from __future__ import annotations

import os

import schemathesis


@schemathesis.check
def admin_refusal(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    if not case.operation.path.startswith("/admin"):
        return None
    if case.method.upper() != case.operation.method.upper():
        return None  # an unsupported method is answered 405 by routing: no route, no door
    expect = os.environ.get("ST_EXPECT_ADMIN", "authorized")
    status = response.status_code
    if expect == "disabled":
        assert status == 403, f"admin API without a token configured answered {status}"
    elif expect == "refused":
        assert status in (401, 429), f"admin call without the token answered {status}"
        if status == 401:
            assert response.json() == {"detail": "unauthorized"}, response.text
            assert response.headers.get("www-authenticate") == ["Bearer"], response.headers
        else:
            assert response.headers.get("retry-after"), "429 without Retry-After"
    return None


@schemathesis.check
def no_secret_in_answers(ctx, response, case) -> None:  # type: ignore[no-untyped-def]
    secret = os.environ.get("ST_SECRET")
    if not secret:
        return None
    assert secret not in response.text, "an answer echoes the admin token"
    for name, values in response.headers.items():
        assert all(secret not in v for v in values), f"header {name} echoes the admin token"
    return None
