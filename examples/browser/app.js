// A browser client that logs in through nats-auth-callout with a user name and
// a password over WebSocket. It holds no key and mints no JWT: the server asks
// the callout service, which answers with this user's permissions from the
// policy (john-doe: publish and subscribe on users.john-doe.>).
//
// Try it:
//   make dev        # nats-server + the service; prints john-doe's password
//   cd examples/browser && npm ci && npm run serve
//   open http://127.0.0.1:8000/?server=ws://127.0.0.1:8080&user=john-doe
//
// Served as a plain ES module; nats.ws is imported from node_modules. The
// query string pre-fills the form (server, user); the password is typed,
// never put in a URL.

import {
  connect,
  ErrorCode,
  Events,
  StringCodec,
} from "./node_modules/nats.ws/esm/nats.js";

const OTHER_SUBJECT = "users.someone-else.x";
const WAIT_MS = 5000;

const $ = (id) => document.getElementById(id);
const sc = StringCodec();
let nc = null;

function show(id, text, state) {
  const el = $(id);
  el.textContent = text;
  el.dataset.state = state;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The server answers a forbidden publish with -ERR 'Permissions Violation for
// Publish to "..."' and keeps the connection open. nats.ws reports it on the
// status iterator as {type: "error", data: "PERMISSIONS_VIOLATION",
// permissionContext: {operation, subject}}. Start listening before publishing.
function nextPermissionsViolation(conn) {
  const statuses = conn.status();
  return (async () => {
    for await (const s of statuses) {
      if (s.type === Events.Error && s.data === ErrorCode.PermissionsViolation) {
        return s;
      }
    }
    throw new Error("connection closed before any permissions violation");
  })();
}

async function roundTrip(conn, user) {
  const subject = `users.${user}.hello`;
  const sub = conn.subscribe(`users.${user}.>`, { max: 1 });
  const sent = `ping ${Date.now()}`;
  const received = (async () => {
    for await (const m of sub) {
      return { subject: m.subject, data: sc.decode(m.data) };
    }
    throw new Error("subscription closed without a message");
  })();
  conn.publish(subject, sc.encode(sent));
  const got = await withTimeout(received, WAIT_MS, "round trip");
  if (got.data !== sent) {
    throw new Error(`got ${JSON.stringify(got.data)}, sent ${JSON.stringify(sent)}`);
  }
  return got;
}

async function tryOtherUser(conn) {
  const violation = nextPermissionsViolation(conn);
  conn.publish(OTHER_SUBJECT, sc.encode("not mine"));
  await conn.flush(); // the server handles PUB before the PING of flush
  const s = await withTimeout(violation, WAIT_MS, "permissions violation");
  const ctx = s.permissionContext ?? {};
  return `${s.data}: ${ctx.operation ?? "?"} to "${ctx.subject ?? "?"}" refused by the server`;
}

async function login(event) {
  event.preventDefault();
  document.body.dataset.phase = "running";
  $("connect").disabled = true;
  const server = $("server").value.trim();
  const user = $("user").value.trim();
  const password = $("password").value;
  show("connection", `connecting to ${server} as ${user} ...`, "pending");
  show("round-trip", "-", "pending");
  show("violation", "-", "pending");

  try {
    // user/pass go to the server in CONNECT; the server passes them, encrypted
    // when the callout has an xkey, to nats-auth-callout.
    nc = await connect({ servers: server, user, pass: password, name: "browser-example" });
  } catch (err) {
    // A refused login is "Authorization Violation" (code AUTHORIZATION_VIOLATION).
    show("connection", `login refused: ${err.message} (${err.code ?? "error"})`, "error");
    $("connect").disabled = false;
    document.body.dataset.phase = "done";
    return;
  }
  show("connection", `connected as ${user} to ${nc.getServer()}`, "ok");
  $("disconnect").disabled = false;
  nc.closed().then((err) => {
    show("connection", err ? `closed: ${err.message}` : "closed", err ? "error" : "pending");
    $("connect").disabled = false;
    $("disconnect").disabled = true;
  });

  try {
    const got = await roundTrip(nc, user);
    show("round-trip", `round trip ok: "${got.data}" came back on ${got.subject}`, "ok");
  } catch (err) {
    show("round-trip", `round trip failed: ${err.message}`, "error");
  }

  try {
    show("violation", await tryOtherUser(nc), "ok");
  } catch (err) {
    show("violation", `no permissions violation: ${err.message}`, "error");
  }
  document.body.dataset.phase = "done";
}

async function logout() {
  if (nc !== null) {
    await nc.close();
    nc = null;
  }
}

const params = new URLSearchParams(location.search);
for (const name of ["server", "user"]) {
  if (params.has(name)) {
    $(name).value = params.get(name);
  }
}
$("login").addEventListener("submit", login);
$("disconnect").addEventListener("click", logout);
document.body.dataset.phase = "ready";
