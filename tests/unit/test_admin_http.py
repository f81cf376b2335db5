"""`POST /admin/revoke` on the HTTP port: off, authentication, body checks, the call."""

from __future__ import annotations

import hmac
import json
import time
from typing import TYPE_CHECKING

import aiohttp
import pytest
from structlog.testing import capture_logs

from service.config import Settings
from service.errors import ConfigError
from service.ops import admin
from service.ops.health import Health
from service.ops.http import HttpApi
from service.ops.metrics import Metrics
from service.process.admin import admin_token, revoker
from service.process.sessions import LiveSessions
from service.review.sessions import Revocation

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TOKEN = "s3cret-admin-token-0123456789"
OUTCOME = {"user": "john-doe", "instances": 1, "found": 2, "kicked": 2, "until": None}


class Calls:
    """A stand-in for the process layer's revocation: records what it was given."""

    def __init__(self) -> None:
        self.got: list[Revocation] = []

    async def __call__(self, revocation: Revocation) -> tuple[int, dict[str, object]]:
        self.got.append(revocation)
        return 200, dict(OUTCOME)


async def _api(token: str | None, calls: Calls | None) -> HttpApi:
    health = Health()
    api = HttpApi(
        "127.0.0.1:0",
        metrics=Metrics(),
        not_ready=health.not_ready,
        admin_token=None if token is None else token.encode(),
        revoke=calls,
    )
    with capture_logs():
        await api.start()
    return api


@pytest.fixture(name="calls")
def _calls() -> Calls:
    return Calls()


@pytest.fixture(name="api")
async def _served(calls: Calls) -> AsyncIterator[HttpApi]:
    api = await _api(TOKEN, calls)
    yield api
    await api.stop()


async def _post(
    api: HttpApi, body: bytes | dict[str, object], token: str | None = TOKEN
) -> tuple[int, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{api.port}{admin.PATH}", data=data, headers=headers
        ) as response,
    ):
        return response.status, await response.text()


async def test_without_the_setting_the_path_is_404() -> None:
    """No admin token file: /admin/revoke does not exist, even with a token."""
    calls = Calls()
    api = await _api(None, calls)
    try:
        status, _ = await _post(api, {"user": "john-doe"})
    finally:
        await api.stop()

    assert (status, calls.got) == (404, [])


async def test_no_token_is_401_logged_once_without_detail(
    api: HttpApi, calls: Calls
) -> None:
    """No Authorization header: 401, no body detail, one log line for two tries."""
    with capture_logs() as logs:
        first = await _post(api, {"user": "john-doe"}, token=None)
        second = await _post(api, {"user": "john-doe"}, token=None)

    assert [first, second] == [(401, ""), (401, "")]
    assert calls.got == []
    assert [e["event"] for e in logs] == ["callout.admin_unauthorized"]


async def test_wrong_token_is_401_compared_in_constant_time(
    api: HttpApi, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong bearer token is 401, decided by hmac.compare_digest, and never logged."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # admin reads it per call
    with capture_logs() as logs:
        status, text = await _post(api, {"user": "john-doe"}, token="wrong-" + TOKEN)

    assert (status, text, calls.got) == (401, "", [])
    assert compared == [(b"wrong-" + TOKEN.encode(), TOKEN.encode())]
    assert TOKEN not in repr(logs)


async def test_a_token_without_the_bearer_scheme_is_401(
    api: HttpApi, calls: Calls
) -> None:
    """The right token under another scheme (Basic) is not accepted."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{api.port}{admin.PATH}",
            json={"user": "john-doe"},
            headers={"Authorization": f"Basic {TOKEN}"},
        ) as response,
    ):
        status = response.status

    assert (status, calls.got) == (401, [])


async def test_oversized_body_is_413(api: HttpApi, calls: Calls) -> None:
    """A body over MAX_BODY bytes is refused with 413 and nothing is revoked."""
    body: dict[str, object] = {"user": "john-doe", "reason": "x" * (admin.MAX_BODY + 1)}

    status, _ = await _post(api, body)

    assert (status, calls.got) == (413, [])


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        {"user": ""},
        {"user": "john doe"},
        {"user": "john\x00doe"},
        {"user": 42},
        {"user": "x" * 257},
        {"reason": "no user"},
        {"user": "john-doe", "for": "soon"},
        {"user": "john-doe", "for": -5},
        {"user": "john-doe", "reason": 7},
        {"user": "john-doe", "extra": True},
    ],
)
async def test_bad_body_is_400(
    api: HttpApi, calls: Calls, body: bytes | dict[str, object]
) -> None:
    """A body that is not a well-formed revocation (bad user name, duration) is 400."""
    status, text = await _post(api, body)

    assert (status, calls.got) == (400, [])
    assert "error" in json.loads(text)


@pytest.mark.parametrize(("span", "seconds"), [("1h", 3600), (90, 90), ("120", 120)])
async def test_good_request_calls_revoke_once(
    api: HttpApi, calls: Calls, span: object, seconds: int
) -> None:
    """Right token and body: the callable runs once with it; 200 and its JSON."""
    before = time.time()
    with capture_logs() as logs:
        status, text = await _post(
            api, {"user": "john-doe", "reason": "left", "for": span}
        )

    assert (status, json.loads(text)) == (200, OUTCOME)
    [got] = calls.got
    assert (got.user, got.reason) == ("john-doe", "left")
    assert before + seconds <= got.until <= time.time() + seconds
    assert [e["event"] for e in logs] == ["callout.admin_revoke"]
    assert TOKEN not in repr(logs)


async def test_without_for_the_revocation_lasts_until_the_policy_changes(
    api: HttpApi, calls: Calls
) -> None:
    """No `for`: until is 0, which the instances read as "until the policy changes"."""
    status, _ = await _post(api, {"user": "john-doe"})

    assert status == 200
    assert [(r.user, r.reason, r.until) for r in calls.got] == [("john-doe", "", 0.0)]


async def test_get_is_405(api: HttpApi, calls: Calls) -> None:
    """Only POST revokes: a GET is 405 naming POST."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{api.port}{admin.PATH}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        status, allow = response.status, response.headers["Allow"]

    assert (status, allow, calls.got) == (405, "POST", [])


async def test_without_a_system_login_it_is_503() -> None:
    """Turned on but with nothing to revoke over: 503 with a short reason."""
    api = await _api(TOKEN, None)
    try:
        status, text = await _post(api, {"user": "john-doe"})
    finally:
        await api.stop()

    assert status == 503
    assert "system-account login" in json.loads(text)["error"]


# --- the process side: the token file and the revocation's wiring ------------


def test_token_file_readable_by_others_is_refused_with_a_warning(
    tmp_path: Path,
) -> None:
    """A world-readable token file turns the endpoint off and says chmod 600."""
    path = tmp_path / "admin-token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o644)

    with capture_logs() as logs:
        token = admin_token(Settings(admin_token_file=path))
    path.chmod(0o600)

    assert token is None
    assert [e["event"] for e in logs] == ["callout.config_warning"]
    assert "chmod 600" in logs[0]["warning"]
    assert admin_token(Settings(admin_token_file=path)) == TOKEN.encode()


def test_short_or_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    """A token under 16 characters, or no file, stops startup naming the setting."""
    short = tmp_path / "short"
    short.write_text("abc", encoding="utf-8")
    short.chmod(0o600)

    with pytest.raises(ConfigError, match="CALLOUT_ADMIN_TOKEN_FILE"):
        admin_token(Settings(admin_token_file=short))
    with pytest.raises(ConfigError, match="CALLOUT_ADMIN_TOKEN_FILE"):
        admin_token(Settings(admin_token_file=tmp_path / "absent"))


async def test_revoker_without_a_system_login_answers_503() -> None:
    """The serve() wiring: no CALLOUT_SYSTEM_* means 503 with the settings named."""
    sessions = LiveSessions(Settings(), Metrics(), lambda: pytest.fail("unused"))

    status, answer = await revoker(sessions)(Revocation("john-doe", "", 0.0))

    assert (status, answer) == (
        503,
        {"error": "no system-account login (CALLOUT_SYSTEM_*)"},
    )
