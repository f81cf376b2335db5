"""
JWKS key sets for identity providers: fetched off the request path, cached,
shared by every policy that names the same source.

Strategy: one `KeyStore` per source (a URL or a file), in a process-wide weak
registry, so a policy reload that keeps the source keeps its keys (no refetch
on every SIGHUP) and a source no policy names any more is dropped, its thread
ending with it. Each store has a daemon thread that fetches at creation,
every `REFRESH_EVERY`, after a failure with backoff, and when a request finds
no key for its `kid` -- at most once per `COOLDOWN` per source, so tokens
with made-up kids cannot turn into a request flood at the identity provider.

Requests run on the dispatcher's small thread pool, so a request may wait for
a refresh only a provider's `unknown_kid_wait` (well under nats-server's 2 s
budget), only while a fetch is due or running and the last one did not fail,
and only one request per store at a time: a JWKS server that is down or slow
costs other requests no pool time, and identities that use no JWKS never
touch a store. A request whose key is cached never waits.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
import urllib.parse
import urllib.request
import weakref
from typing import IO, TYPE_CHECKING

import structlog
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from service.errors import JwksError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from http.client import HTTPMessage
    from pathlib import Path

    Fetch = Callable[[], bytes]
    Clock = Callable[[], float]

log = structlog.get_logger("callout")

REFRESH_EVERY = 300.0  # seconds between routine refreshes
COOLDOWN = 10.0  # at most one unknown-kid refresh per source in this time
FETCH_TIMEOUT = 3.0
RETRY_FIRST, RETRY_MAX = 1.0, 60.0  # backoff after a failed fetch
MAX_BYTES = 1 << 20
MAX_KEYS = 100

UNKNOWN_KID = "token_unknown_kid"
UNAVAILABLE = "jwks_unavailable"  # no key set was ever loaded from the source
BAD_ALGORITHM = "token_bad_algorithm"

# Only these members are kept: a private key (`d`, ...) published by mistake
# never becomes a verification key, and `oct` (shared secret) keys are not
# accepted from a JWKS at all: HS256 needs an explicit secret file.
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}


def parse_jwks(data: bytes) -> dict[str, dict[str, str]]:
    """
    The public signing keys of a JWKS document, by `kid` ("" when absent).

    Raises:
        JwksError: Not JSON, not `{"keys": [...]}`, or no usable key.
    """
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise JwksError("not a JSON document") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError('not a JWKS: expected {"keys": [...]}')
    keys: dict[str, dict[str, str]] = {}
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        members = _PUBLIC_MEMBERS.get(entry.get("kty", ""))
        kid = entry.get("kid", "")
        if members is None or not isinstance(kid, str) or kid in keys:
            continue
        public = {m: entry[m] for m in (*members, "alg") if m in entry}
        if all(isinstance(v, str) for v in public.values()) and set(members) <= set(
            public
        ):
            keys[kid] = {"kty": entry["kty"], "kid": kid, **public}
    if not keys:
        raise JwksError("no usable public signing key (RSA, EC or OKP)")
    return keys


class _State:
    """What a store and its thread share; the thread holds no store reference."""

    def __init__(self, clock: Clock) -> None:
        self.cond = threading.Condition()
        self.clock = clock
        self.keys: dict[str, dict[str, str]] = {}
        self.verifiers: dict[tuple[str, str], PyJWK | str] = {}
        self.loaded = False
        self.failed = False  # the last fetch failed
        self.generation = 0  # finished fetches
        self.wanted = True
        self.busy = False
        self.closed = False
        self.waiting = 0
        self.last_forced = -math.inf
        self.due = math.inf

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class KeyStore:
    """The cached keys of one JWKS source."""

    def __init__(
        self,
        location: str,
        fetch: Fetch,
        *,
        initial: dict[str, dict[str, str]] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.location = location
        self._state = state = _State(clock)
        if initial is not None:
            self.replace(initial)
        self.thread = threading.Thread(
            target=_refresher,
            args=(state, fetch, location),
            name="jwks-refresh",
            daemon=True,
        )
        weakref.finalize(self, state.close)
        self.thread.start()

    @property
    def loaded(self) -> bool:
        """Whether a key set was ever loaded."""
        return self._state.loaded

    def replace(self, keys: dict[str, dict[str, str]]) -> None:
        """Put a freshly read key set in force (a policy load read the file)."""
        state = self._state
        with state.cond:
            state.keys, state.loaded, state.failed = keys, True, False
            state.verifiers.clear()
            state.wanted = False
            state.due = state.clock() + REFRESH_EVERY

    def wait_loaded(self, timeout: float) -> bool:
        """Block until a key set is loaded or a fetch fails (for dry runs)."""
        state = self._state
        deadline = state.clock() + timeout
        with state.cond:
            while not state.loaded and not state.failed:
                remaining = deadline - state.clock()
                if remaining <= 0:
                    break
                state.cond.wait(remaining)
            return state.loaded

    def find(self, kid: str | None, alg: str, *, wait: float) -> PyJWK | str:
        """
        The verification key for a token's `kid` and `alg`.

        Returns:
            The key, or a reason code: `token_unknown_kid`, `jwks_unavailable`
            or `token_bad_algorithm` (the key is of another type, or declares
            another `alg`).
        """
        state = self._state
        with state.cond:
            if (hit := _verifier(state, kid, alg)) is not None:
                return hit
            now = state.clock()
            if not (state.busy or state.wanted) and now - state.last_forced >= COOLDOWN:
                state.last_forced, state.wanted = now, True
                state.cond.notify_all()
            if (state.busy or state.wanted) and not state.failed and not state.waiting:
                state.waiting += 1
                try:
                    generation, deadline = state.generation, now + wait
                    while state.generation == generation:
                        remaining = deadline - state.clock()
                        if remaining <= 0:
                            break
                        state.cond.wait(remaining)
                finally:
                    state.waiting -= 1
                if (hit := _verifier(state, kid, alg)) is not None:
                    return hit
            return UNKNOWN_KID if state.loaded else UNAVAILABLE


def _verifier(state: _State, kid: str | None, alg: str) -> PyJWK | str | None:
    """The cached key for (kid, alg); None when the set has no such kid."""
    if kid is None:
        # No kid: only a set with exactly one key is unambiguous.
        if len(state.keys) != 1:
            return None
        kid = next(iter(state.keys))
    jwk = state.keys.get(kid)
    if jwk is None:
        return None
    cached = state.verifiers.get((kid, alg))
    if cached is None:
        cached = BAD_ALGORITHM
        if jwk.get("alg", alg) == alg:  # RFC 7517 §4.4: a declared alg binds
            try:
                cached = PyJWK(jwk, algorithm=alg)
            except (PyJWTError, ValueError, KeyError, TypeError):
                # Wrong key type for alg (InvalidKeyError), or key data that
                # no algorithm can read: either way not a key for this token.
                cached = BAD_ALGORITHM
        state.verifiers[kid, alg] = cached
    return cached


def _refresher(state: _State, fetch: Fetch, location: str) -> None:
    backoff = RETRY_FIRST
    while True:
        with state.cond:
            while not state.closed and not state.wanted:
                remaining = state.due - state.clock()
                if remaining <= 0:
                    break
                state.cond.wait(min(remaining, REFRESH_EVERY))
            if state.closed:
                return
            state.wanted, state.busy = False, True
        error = ""
        try:
            keys = parse_jwks(fetch())
        except Exception as exc:  # noqa: BLE001 - no fetch failure may end the refresher
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        with state.cond:
            was_failed, old = state.failed, state.keys
            state.busy = False
            state.generation += 1
            if error:
                state.failed = True
                state.due = state.clock() + backoff
                backoff = min(backoff * 2, RETRY_MAX)
            else:
                state.keys, state.loaded, state.failed = keys, True, False
                if keys != old:
                    state.verifiers.clear()
                state.due = state.clock() + REFRESH_EVERY
                backoff = RETRY_FIRST
            state.cond.notify_all()
        # Only changes are logged: an outage gives one line, not one per retry.
        # A broken log stream must not end the refreshes.
        with contextlib.suppress(Exception):
            if error and not was_failed:
                log.warning("callout.jwks_fetch_failed", source=location, error=error)
            elif not error and (was_failed or keys != old):
                log.info("callout.jwks_loaded", source=location, kids=sorted(keys))


class _NoUnsafeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        # urllib would follow http -> ftp; a key set only comes over HTTP(S).
        if urllib.parse.urlsplit(newurl).scheme not in {"http", "https"}:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoUnsafeRedirects)


def _http_fetch(url: str) -> Fetch:
    def fetch() -> bytes:
        request = urllib.request.Request(  # noqa: S310 - the loader allows http(s) only
            url,
            headers={"Accept": "application/json", "User-Agent": "nats-auth-callout"},
        )
        with _OPENER.open(request, timeout=FETCH_TIMEOUT) as response:
            data: bytes = response.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise JwksError("JWKS larger than 1 MiB")
        return data

    return fetch


def _file_fetch(path: Path) -> Fetch:
    def fetch() -> bytes:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise JwksError("JWKS larger than 1 MiB")
        return data

    return fetch


_REGISTRY: weakref.WeakValueDictionary[str, KeyStore] = weakref.WeakValueDictionary()
_REGISTRY_LOCK = threading.Lock()


def url_store(url: str) -> KeyStore:
    """The store for a JWKS URL; a new one starts fetching at once."""
    with _REGISTRY_LOCK:
        store = _REGISTRY.get(url)
        if store is None:
            store = _REGISTRY[url] = KeyStore(url, _http_fetch(url))
        return store


def file_store(path: Path) -> KeyStore:
    """
    The store for a JWKS file, read now so that a bad file fails the load.

    Raises:
        OSError: The file cannot be read.
        JwksError: It is not a usable JWKS.
    """
    path = path.resolve()
    keys = parse_jwks(_file_fetch(path)())
    location = f"file:{path}"
    with _REGISTRY_LOCK:
        store = _REGISTRY.get(location)
        if store is None:
            store = _REGISTRY[location] = KeyStore(
                location, _file_fetch(path), initial=keys
            )
        else:
            store.replace(keys)
        return store


def stores() -> Mapping[str, KeyStore]:
    """A snapshot of the live stores, by location (for tests and dry runs)."""
    with _REGISTRY_LOCK:
        return dict(_REGISTRY.items())
