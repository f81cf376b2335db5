"""
The least a correct callout responder does: storms.py's lower bound.

Raw NATS protocol on one asyncio stream (no nats-py), every request decoded
and verified (`decode_request`: signature, issuer, audience, expiry),
one fixed grant (what the storm policy's `customer` role renders), no
policy, no log line, no metrics, no lanes. A connect through it still pays
nats-server's own callout work and the loopback hops; the gap between this
column and the callout column is what the service adds on top. Config
mode, plain (unsealed) requests, as stormenv.py configures them.

Started by stormenv.py with the service's settings in the environment
(CALLOUT_NATS_URL, CALLOUT_NATS_NKEY_SEED_FILE, CALLOUT_ISSUER_SEED_FILE);
it prints one JSON line, `{"event": "callout.started"}`, once subscribed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from service.errors import RequestError  # noqa: E402
from service.protocol.claims import Permission, UserClaims  # noqa: E402
from service.protocol.nkeys import KeyPair  # noqa: E402
from service.protocol.request import decode_request  # noqa: E402
from service.protocol.response import encode_response, encode_user_jwt  # noqa: E402

SUBJECT = "$SYS.REQ.USER.AUTH"
ACCOUNT = "APP"


def _connect_line(info: dict[str, object], login: KeyPair) -> bytes:
    nonce = str(info.get("nonce", "")).encode()
    sig = base64.urlsafe_b64encode(login.sign(nonce)).rstrip(b"=").decode()
    options = {
        "verbose": False,
        "pedantic": False,
        "nkey": login.public_key,
        "sig": sig,
        "protocol": 1,
        "headers": True,
        "no_responders": True,
        "lang": "python-minimal",
        "version": "0",
    }
    return f"CONNECT {json.dumps(options)}\r\n".encode()


def respond(body: bytes, issuer: KeyPair) -> bytes | None:
    """The signed response to one request; None when it does not verify."""
    now = time.time()
    try:
        request = decode_request(body, None, now=now)
    except RequestError:
        return None
    user = request.connect_opts.user
    own = f"users.{user}.>"
    claims = UserClaims(
        subject=request.user_nkey,
        audience=ACCOUNT,
        name=user,
        expires=int(now) + 3600,
        pub=Permission(allow=(own, "$SYS.REQ.USER.INFO")),
        sub=Permission(allow=(own, "_INBOX.>")),
    )
    user_jwt = encode_user_jwt(claims, issuer, now=int(now))
    token = encode_response(request, issuer, now=int(now), jwt=user_jwt)
    return token.encode("ascii")


async def serve(url: str, login: KeyPair, issuer: KeyPair) -> None:
    """Answer requests until the server closes the connection."""
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    info = json.loads((await reader.readline()).split(b" ", 1)[1])
    writer.write(_connect_line(info, login))
    writer.write(f"SUB {SUBJECT} minimal 1\r\nPING\r\n".encode())
    while (line := await reader.readline()) and not line.startswith(b"PONG"):
        if line.startswith(b"-ERR"):
            raise SystemExit(f"refused: {line.decode().strip()}")
    print(json.dumps({"event": "callout.started"}), flush=True)
    while line := await reader.readline():
        if line.startswith(b"PING"):
            writer.write(b"PONG\r\n")
            continue
        head = line.split()
        if head[:1] not in ([b"MSG"], [b"HMSG"]):
            continue
        # MSG subject sid reply size / HMSG subject sid reply hdr_size size
        reply, size = head[3].decode(), int(head[-1])
        data = await reader.readexactly(size + 2)
        body = data[int(head[4]) : size] if head[0] == b"HMSG" else data[:size]
        answer = respond(body, issuer)
        if answer is not None:
            writer.write(f"PUB {reply} {len(answer)}\r\n".encode() + answer + b"\r\n")


def main() -> int:
    login = KeyPair.from_seed(
        Path(os.environ["CALLOUT_NATS_NKEY_SEED_FILE"]).read_text().strip()
    )
    issuer = KeyPair.from_seed(
        Path(os.environ["CALLOUT_ISSUER_SEED_FILE"]).read_text().strip()
    )
    asyncio.run(serve(os.environ["CALLOUT_NATS_URL"], login, issuer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
