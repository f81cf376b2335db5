"""The JWKS key store: parsing, caching, bounded waits, rate-limited refresh."""

from __future__ import annotations

import gc
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from jwt import PyJWK

from service.errors import JwksError
from service.policy import jwks
from tests.idp import JwksServer, SigningKey

if TYPE_CHECKING:
    from collections.abc import Iterator, MutableMapping
    from pathlib import Path

RSA = SigningKey.rsa("rsa-1")
EC = SigningKey.ec("ec-1")


def document(*keys: SigningKey, **extra: Any) -> bytes:
    return json.dumps({"keys": [k.jwk() | extra for k in keys]}).encode()


class Source:
    """A fetch function whose answer, speed and failures the test controls."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls = 0
        self.fail = False
        self.delay = 0.0
        self.fetched = threading.Event()

    def __call__(self) -> bytes:
        self.calls += 1
        time.sleep(self.delay)
        self.fetched.set()
        if self.fail:
            raise OSError("connection refused")
        return self.data


def settled(store: jwks.KeyStore, source: Source, calls: int) -> None:
    """Wait until `calls` fetches have finished (the store's thread is async)."""
    deadline = time.monotonic() + 5
    while source.calls < calls or store._state.busy or store._state.wanted:
        assert time.monotonic() < deadline, "fetch did not finish"
        time.sleep(0.005)


@pytest.fixture(name="logs", autouse=True)
def _logs() -> Iterator[list[MutableMapping[str, Any]]]:
    # The refresher threads log; keep it off the (captured, closing) stdout.
    with structlog.testing.capture_logs() as logs:
        yield logs


@pytest.fixture(name="server")
def _server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


def test_parse_keeps_public_signing_keys_only() -> None:
    """Private members, `oct` keys and encryption keys never become keys."""
    private = json.loads(PyJWK.from_dict(RSA.jwk()).Algorithm.to_jwk(RSA.private)) | {
        "kid": "leaked"
    }
    data = json.dumps(
        {
            "keys": [
                RSA.jwk(),
                EC.jwk() | {"use": "enc"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                private,
                "junk",
            ]
        }
    ).encode()

    keys = jwks.parse_jwks(data)

    assert set(keys) == {"rsa-1", "leaked"}
    assert "d" not in keys["leaked"]
    assert set(keys["rsa-1"]) == {"kty", "kid", "n", "e"}


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"keys": {}}',
        b'{"keys": []}',
        b'{"keys": [{"kty": "oct"}]}',
    ],
)
def test_parse_refuses_unusable_documents(data: bytes) -> None:
    """Anything without one usable key is a JwksError (never a crash)."""
    with pytest.raises(JwksError):
        jwks.parse_jwks(data)


def test_known_kid_is_found_without_a_fetch() -> None:
    """After the first fetch, a cached key is returned at once."""
    source = Source(document(RSA, EC))
    store = jwks.KeyStore("test", source)
    settled(store, source, 1)

    key = store.find("ec-1", "ES256", wait=0.5)

    assert isinstance(key, PyJWK)
    assert source.calls == 1


def test_unknown_kid_refreshes_once_per_cooldown() -> None:
    """A rotated key is fetched on demand; a flood of bogus kids is not."""
    source = Source(document(RSA))
    store = jwks.KeyStore("test", source)
    settled(store, source, 1)
    source.data = document(RSA, EC)

    rotated = store.find("ec-1", "ES256", wait=1.0)
    bogus = [store.find(f"bogus-{n}", "RS256", wait=1.0) for n in range(5)]

    assert isinstance(rotated, PyJWK)
    assert bogus == ["token_unknown_kid"] * 5
    assert source.calls == 2


def test_wait_is_bounded_by_the_provider_setting() -> None:
    """A slow JWKS server costs a request at most its wait."""
    source = Source(document(RSA))
    store = jwks.KeyStore("test", source)
    settled(store, source, 1)
    source.delay = 1.0

    started = time.monotonic()
    found = store.find("rotated", "RS256", wait=0.2)
    elapsed = time.monotonic() - started

    assert found == "token_unknown_kid"
    assert 0.15 < elapsed < 0.6


def test_a_failing_source_never_makes_requests_wait() -> None:
    """After a failed fetch requests fail at once: `jwks_unavailable`."""
    source = Source(document(RSA))
    source.fail = True
    store = jwks.KeyStore("test", source)
    settled(store, source, 1)
    source.delay = 2.0

    started = time.monotonic()
    found = store.find("rsa-1", "RS256", wait=1.0)
    elapsed = time.monotonic() - started

    assert found == "jwks_unavailable"
    assert elapsed < 0.1


def test_declared_alg_and_key_type_bind() -> None:
    """A key used with another algorithm than it declares, or another type."""
    source = Source(document(RSA, alg="RS256"))
    store = jwks.KeyStore("test", source)
    settled(store, source, 1)

    assert store.find("rsa-1", "RS512", wait=0.1) == "token_bad_algorithm"
    assert store.find("rsa-1", "RS256", wait=0.1) != "token_bad_algorithm"


def test_key_type_must_fit_the_algorithm() -> None:
    """An RSA key is never used for ES256 or EdDSA."""
    source = Source(document(RSA))
    store = jwks.KeyStore("test", source)
    settled(store, source, 1)

    assert store.find("rsa-1", "ES256", wait=0.1) == "token_bad_algorithm"
    assert store.find("rsa-1", "EdDSA", wait=0.1) == "token_bad_algorithm"


def test_token_without_kid_needs_a_single_key_set() -> None:
    """No kid: only unambiguous with exactly one key."""
    one = Source(document(RSA))
    two = Source(document(RSA, EC))
    single, double = jwks.KeyStore("one", one), jwks.KeyStore("two", two)
    settled(single, one, 1)
    settled(double, two, 1)

    assert isinstance(single.find(None, "RS256", wait=0.1), PyJWK)
    assert double.find(None, "RS256", wait=0.1) == "token_unknown_kid"


def test_url_store_fetches_over_http_and_is_shared(server: JwksServer) -> None:
    """One store per URL, shared by every policy that names it."""
    server.sets["app"] = json.loads(document(RSA))
    url = server.url("app")

    first, second = jwks.url_store(url), jwks.url_store(url)

    assert first is second
    assert first.wait_loaded(5)
    assert isinstance(first.find("rsa-1", "RS256", wait=0.5), PyJWK)
    assert server.hits["app"] == 1


def test_http_errors_leave_the_store_unavailable(server: JwksServer) -> None:
    """A 404 is a failed fetch, not an empty key set."""
    store = jwks.url_store(server.url("missing"))

    assert not store.wait_loaded(5)
    assert store.find("rsa-1", "RS256", wait=0.5) == "jwks_unavailable"


def test_file_store_reads_now_and_fails_the_load(tmp_path: Path) -> None:
    """A JWKS file is read at once: a bad one raises, a good one is loaded."""
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(document(EC))
    bad.write_text("{}")

    store = jwks.file_store(good)

    assert store.loaded
    assert isinstance(store.find("ec-1", "ES256", wait=0.1), PyJWK)
    with pytest.raises(JwksError):
        jwks.file_store(bad)
    with pytest.raises(OSError, match="No such file"):
        jwks.file_store(tmp_path / "absent.json")


def test_unused_store_ends_its_thread() -> None:
    """When no policy holds a store any more, its refresher thread stops."""
    source = Source(document(RSA))
    store = jwks.KeyStore("test", source)
    settled(store, source, 1)
    thread = store.thread

    del store
    gc.collect()
    thread.join(5)

    assert not thread.is_alive()


def test_outage_and_recovery_are_logged_once(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """One line when fetches start failing, one when keys load again."""
    source = Source(document(RSA))
    source.fail = True
    store = jwks.KeyStore("https://idp.test/jwks", source)
    settled(store, source, 1)
    for _ in range(3):
        store._state.last_forced = -1e9  # let each unknown kid refetch
        store.find("x", "RS256", wait=0.5)
        settled(store, source, source.calls)
    source.fail = False
    store._state.last_forced = -1e9
    store.find("rsa-1", "RS256", wait=1.0)
    deadline = time.monotonic() + 5
    while len(logs) < 2 and time.monotonic() < deadline:  # logged after the fetch
        time.sleep(0.01)

    events = [e["event"] for e in logs if e.get("source") == "https://idp.test/jwks"]
    assert events == ["callout.jwks_fetch_failed", "callout.jwks_loaded"]
    assert logs[-1]["kids"] == ["rsa-1"]
    assert RSA.jwk()["n"] not in repr(logs)
