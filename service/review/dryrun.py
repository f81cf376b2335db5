"""
The authorization request nats-server would send, for dry runs (`explain`,
`test`): no server, no signature, a client described by its options.
"""

from __future__ import annotations

from service.protocol.claims import (
    AuthRequest,
    ClientInfo,
    ClientTLS,
    ConnectOpts,
    ServerId,
    ServerInfo,
    UserNKey,
)

_LEAF = "leafnode"


def dry_request(
    *,
    user: str = "",
    password: str = "",
    token: str = "",
    nkey: str = "",
    cert_pem: str | None = None,
    host: str = "127.0.0.1",
    client_type: str = "nats",
    label: str = "DRYRUN",
) -> AuthRequest:
    """
    A request for a client with these options.

    Args:
        nkey: A public user nkey; its signature is assumed (the caller's
            `verify_nkey` accepts it), so a placeholder nonce and sig are set.
        cert_pem: A client certificate, as nats-server sends one it verified
            (the leaf as its chain).
        client_type: `nats`, `websocket`, `mqtt` or `leafnode`.
        label: Names the placeholder server id and user nkey.
    """
    leaf = client_type == _LEAF
    tls = None if cert_pem is None else ClientTLS(verified_chains=((cert_pem,),))
    placeholder = label.lower() if nkey else ""
    return AuthRequest(
        client_tls=tls,
        server=ServerInfo(id=ServerId(f"N{label}")),
        user_nkey=UserNKey(f"U{label}"),
        client_info=ClientInfo(
            host=host,
            kind="Leafnode" if leaf else "Client",
            type="" if leaf else client_type,
            nonce=placeholder,
        ),
        connect_opts=ConnectOpts(
            user=user, password=password, auth_token=token, nkey=nkey, sig=placeholder
        ),
    )
