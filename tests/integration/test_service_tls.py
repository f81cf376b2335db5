"""
The service's own login over TLS with a client certificate: nats-server
2.15.1 with `tls { verify: true }` on the client port and no other
listener, so CALLOUT_NATS_TLS_CERT/KEY/CA are the only way in.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from service.protocol.nkeys import KeyPair, Prefix
from tests.idp import CA
from tests.integration.clients import connect, round_trip, user_info
from tests.integration.test_client_certs import POLICY, client_context
from tests.natsserver import NatsServer, config_mode_body
from tests.service_process import ServiceProcess

if TYPE_CHECKING:
    from pathlib import Path


async def test_the_service_logs_in_with_a_client_certificate(tmp_path: Path) -> None:
    """With the TLS client settings the service logs in and authorizes a device."""
    ca = CA(tmp_path)
    server_cert, server_key, _ = ca.issue(
        "server", cn="127.0.0.1", ips=("127.0.0.1",), server=True
    )
    service_cert, service_key, _ = ca.issue("callout", cn="nats-auth-callout")
    device_cert, device_key, _ = ca.issue("device-7", cn="device-7")
    issuer, login = KeyPair.create(Prefix.ACCOUNT), KeyPair.create(Prefix.USER)
    tls = (
        f"tls {{ cert_file: {json.dumps(str(server_cert))},"
        f" key_file: {json.dumps(str(server_key))},"
        f" ca_file: {json.dumps(str(ca.cert_file))}, verify: true, timeout: 2 }}\n"
    )
    body = tls + config_mode_body(
        issuer=issuer.public_key,
        auth_nkey=login.public_key,
        accounts=("APP", "DEVICES"),
    )
    server = NatsServer(body, tmp_path / "nats", websocket=False).start()
    (tmp_path / "issuer.nk").write_text(issuer.export_seed())
    (tmp_path / "login.nk").write_text(login.export_seed())
    (tmp_path / "policy.yaml").write_text(POLICY)
    url = f"tls://127.0.0.1:{server.port}"
    service = ServiceProcess(
        {
            "CALLOUT_NATS_URL": url,
            "CALLOUT_NATS_NKEY_SEED_FILE": str(tmp_path / "login.nk"),
            "CALLOUT_ISSUER_SEED_FILE": str(tmp_path / "issuer.nk"),
            "CALLOUT_POLICY_FILE": str(tmp_path / "policy.yaml"),
            "CALLOUT_NATS_TLS_CERT": str(service_cert),
            "CALLOUT_NATS_TLS_KEY": str(service_key),
            "CALLOUT_NATS_TLS_CA": str(ca.cert_file),
        },
        tmp_path,
    )
    try:
        service.start(wait_for="callout.started")
        nc = await connect(
            url, tls=client_context(ca.cert_file, device_cert, device_key)
        )
        try:
            info = await user_info(nc)
            echoed = await round_trip(nc, "dev.device-7.ping")
        finally:
            await nc.close()
        line = service.wait_for_event("callout.request_authorized")
        code = service.stop()
    finally:
        service.stop()
        server.stop()

    assert code == 0
    assert echoed == b"ping"
    assert info["account"] == "DEVICES"
    assert line["user"] == "device-7"
