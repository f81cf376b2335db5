"""Fixtures of the protocol tests: a fake server, its issuer, the service xkey."""

from __future__ import annotations

import pytest

from service.protocol.nkeys import KeyPair
from service.protocol.xkeys import CurveKeyPair
from tests.factories import FakeServer
from tests.vectors import ISSUER_SEED, Env


@pytest.fixture(name="env")
def _env() -> Env:
    """A fresh server (no xkey) and issuer account."""
    return Env(FakeServer(), KeyPair.from_seed(ISSUER_SEED))


@pytest.fixture(name="service_xkey")
def _service_xkey() -> CurveKeyPair:
    """The service's curve key."""
    return CurveKeyPair.create()


@pytest.fixture(name="xenv")
def _xenv() -> Env:
    """A fresh server with an ephemeral xkey, and the issuer account."""
    return Env(FakeServer(xkey=CurveKeyPair.create()), KeyPair.from_seed(ISSUER_SEED))
