#!/usr/bin/env bash
# Build deploy/Dockerfile and smoke-test the image against a nats-server on
# this host (`make image-smoke`; docs/deployment.md "Container image"):
#   --version, `check` of a policy, /readyz 200, a login round trip through
#   the callout, a SIGHUP policy reload, and `stop` exiting 0.
#
# Uses docker or podman, whichever is installed (CONTAINER_ENGINE=... to
# choose). The build pulls the base image (PYTHON_IMAGE) unless it is
# already there: where there is no registry, load or build one first.
# Needs the project's virtualenv (make .venv/.installed) for nats-server,
# the CLI (`init`) and nats-py on the host.
set -euo pipefail

say() { printf 'image-smoke: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

engine="${CONTAINER_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null 2>&1; then
    engine=podman
  else
    say "neither docker nor podman is installed: install one (or set CONTAINER_ENGINE)"
    exit 2
  fi
elif ! command -v "$engine" >/dev/null 2>&1; then
  say "CONTAINER_ENGINE=$engine is not installed"
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.venv/bin"
tag="${IMAGE_TAG:-nats-auth-callout:smoke}"
for tool in nats-server nats-auth-callout python; do
  [ -x "$bin/$tool" ] || { say "$bin/$tool is missing: run make .venv/.installed"; exit 2; }
done

work="$(mktemp -d)"
container=""
nats_pid=""
cleanup() {
  if [ -n "$container" ]; then "$engine" rm -f "$container" >/dev/null 2>&1 || true; fi
  if [ -n "$nats_pid" ]; then kill "$nats_pid" 2>/dev/null || true; wait "$nats_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- build ---------------------------------------------------------------
# podman's default OCI format drops HEALTHCHECK; the docker format keeps it.
build=(build -f "$root/deploy/Dockerfile" -t "$tag")
if [ "$engine" = podman ]; then build+=(--format docker); fi
if [ -n "${PYTHON_IMAGE:-}" ]; then build+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"); fi
say "building $tag with $engine"
"$engine" "${build[@]}" "$root"
healthcheck="$("$engine" image inspect -f '{{json .Config.Healthcheck}}' "$tag")"
case "$healthcheck" in
  *healthz*) ;;
  *) fail "the image has no HEALTHCHECK (got: $healthcheck)" ;;
esac

# --- --version -------------------------------------------------------------
want="$("$bin/nats-auth-callout" --version)"
got="$("$engine" run --rm "$tag" --version)"
[ "$got" = "$want" ] || fail "--version: image says '$got', this checkout '$want'"
say "ok: --version ($got)"

# --- keys, configs, check ------------------------------------------------------
free_port() { "$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
nats_port="$(free_port)"
ws_port="$(free_port)"
http_port="$(free_port)"
"$bin/nats-auth-callout" init "$work/keys" --port "$nats_port" --ws-port "$ws_port" --cost 4 >"$work/init.txt"
password="$(sed -n 's/^ *user: john-doe  password: \([^ ]*\) .*/\1/p' "$work/init.txt")"
[ -n "$password" ] || fail "no demo password in init's output"
# The container runs as uid 10001: it reads copies made readable to it (the
# service warns about that; it is a throwaway directory).
mkdir -m 755 "$work/mount"
for name in issuer.nk service.nk xkey.nk policy.yaml; do
  install -m 644 "$work/keys/$name" "$work/mount/$name"
done
mounts=()
for name in issuer.nk service.nk xkey.nk; do
  mounts+=(-v "$work/mount/$name:/run/secrets/$name:ro")
done
mkdir -m 755 "$work/mount/policy"
cp "$work/mount/policy.yaml" "$work/mount/policy/policy.yaml"
mounts+=(-v "$work/mount/policy:/etc/nats-auth-callout/policy:ro")

"$engine" run --rm "${mounts[@]}" "$tag" check /etc/nats-auth-callout/policy/policy.yaml \
  || fail "check of init's policy"
say "ok: check"

# --- run against a host nats-server ----------------------------------------------
"$bin/nats-server" -c "$work/keys/nats-server.conf" >"$work/nats.log" 2>&1 &
nats_pid=$!
container="$("$engine" run -d --network host "${mounts[@]}" \
  -e CALLOUT_NATS_URL="nats://127.0.0.1:$nats_port" \
  -e CALLOUT_MODE=config \
  -e CALLOUT_NATS_NKEY_SEED_FILE=/run/secrets/service.nk \
  -e CALLOUT_ISSUER_SEED_FILE=/run/secrets/issuer.nk \
  -e CALLOUT_XKEY_SEED_FILE=/run/secrets/xkey.nk \
  -e CALLOUT_HTTP_LISTEN="127.0.0.1:$http_port" \
  "$tag")"

# Wait (bounded) for /readyz 200, the login, then the reload line.
"$bin/python" - "$http_port" <<'PY' || { "$engine" logs "$container" >&2; fail "/readyz never 200"; }
import sys, time, urllib.error, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2)
        break
    except (OSError, urllib.error.URLError):
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.5)
PY
say "ok: /readyz"

"$bin/python" - "$nats_port" "$password" <<'PY' || { "$engine" logs "$container" >&2; fail "login round trip"; }
import asyncio, sys
import nats

async def main() -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{sys.argv[1]}", user="john-doe",
                            password=sys.argv[2], allow_reconnect=False)
    sub = await nc.subscribe("users.john-doe.>")
    await nc.publish("users.john-doe.smoke", b"hi")
    assert (await sub.next_msg(timeout=5)).data == b"hi"
    await nc.close()

asyncio.run(main())
PY
say "ok: login round trip"

"$engine" kill --signal HUP "$container" >/dev/null
for _ in $(seq 1 60); do
  if "$engine" logs "$container" 2>&1 | grep -q '"callout.policy_reloaded"'; then break; fi
  sleep 0.5
done
"$engine" logs "$container" 2>&1 | grep -q '"callout.policy_reloaded"' \
  || { "$engine" logs "$container" >&2; fail "no callout.policy_reloaded after SIGHUP"; }
say "ok: SIGHUP reload"

"$engine" stop -t 10 "$container" >/dev/null
code="$("$engine" inspect -f '{{.State.ExitCode}}' "$container")"
[ "$code" = 0 ] || { "$engine" logs "$container" >&2; fail "exit code $code after stop"; }
"$engine" logs "$container" 2>&1 | grep -q '"callout.stopped"' || fail "no callout.stopped line"
say "ok: stop exits 0"
say "all checks passed ($engine, $tag)"
