#!/usr/bin/env bash
# Policy switching demo: one fresh parleyd, four users, and an operator who
# switches the deployment's E2EE policy live (signal -> instagram-2026 ->
# tiktok -> rollback to signal -> protect-minors), showing at each step what
# the operator sees (`parleyctl`), what the users' clients show (`parley`) and
# what is refused.
#
# Usage: tools/policy-demo.sh
#   PARLEY_BUILD_DIR  build directory holding the binaries (default: build,
#                     relative to the repository root). If the binaries are
#                     missing they are built with scripts/build.sh (needs the
#                     dependencies: run ./scripts/run.sh or
#                     ./scripts/install-deps.sh once, as root).
#   PARLEY_DEMO_KEEP=1  keep the temporary data directory and parleyd's log.
# Needs no root and no network beyond loopback; parleyd runs on free ports and
# a temporary data directory, and is stopped (and its data removed) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
B="${PARLEY_BUILD_DIR:-build}"
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
PARLEYD="$B/core/parleyd"
PARLEY="$B/clients/cli/parley"
PARLEYCTL="$B/tools/parleyctl/parleyctl"

# ----------------------------------------------------------------- output
if [ -t 1 ]; then BOLD=$'\033[1m'; DIM=$'\033[2m'; OFF=$'\033[0m'; else BOLD=; DIM=; OFF=; fi
STEP=0
banner() {  # a numbered section
  STEP=$((STEP + 1))
  printf '\n%s' "$BOLD"
  printf '=%.0s' $(seq 1 78)
  printf '\n %d. %s\n' "$STEP" "$*"
  printf '=%.0s' $(seq 1 78)
  printf '%s\n' "$OFF"
}
say() { printf '\n%s-- %s%s\n' "$BOLD" "$*" "$OFF"; }
# Plain-words explanation of what the viewer is about to see (or just saw).
explain() { printf '%s' "$DIM"; printf '   %s\n' "$@"; printf '%s' "$OFF"; }
# Echoes a command as `$ cmd args`, quoting only the arguments that need it.
echo_cmd() {
  local out="\$ $1" a; shift
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./:@,+=%-]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
  done
  printf '%s%s%s\n' "$BOLD" "$out" "$OFF"
}

# Every client call is bounded (the tools have their own RPC deadlines too).
LIMIT=60
# parley as USER: `as alice conversations` runs parley --profile alice ...
as() { local who="$1"; shift; echo_cmd parley --profile "$who" "$@"; timeout "$LIMIT" "$PARLEY" --profile "$who" "$@" 2>&1; }
# parleyctl with the connection flags shown once, at the start.
ctl() { echo_cmd parleyctl "$@"; timeout "$LIMIT" "$PARLEYCTL" "${CTL_FLAGS[@]}" "$@" 2>&1; }
# A command that must be refused: show the refusal, never stop the demo.
UNEXPECTED=0
refused() {
  if "$@"; then
    printf '%s!! UNEXPECTED: this was accepted; the demo expected a refusal%s\n' "$BOLD" "$OFF"
    UNEXPECTED=$((UNEXPECTED + 1))
  else
    explain "-> refused, as expected (exit code $?)."
  fi
}

# ----------------------------------------------------------------- binaries
if [ ! -x "$PARLEYD" ] || [ ! -x "$PARLEY" ] || [ ! -x "$PARLEYCTL" ]; then
  if command -v cmake >/dev/null && command -v ninja >/dev/null; then
    echo "parleyd, parley or parleyctl is missing in $B; building with scripts/build.sh (a few minutes)..."
    PARLEY_BUILD_DIR="$B" ./scripts/build.sh
  else
    echo "policy-demo: no binaries in $B and no cmake/ninja to build them." >&2
    echo "Run ./scripts/run.sh once (installs the dependencies as root and builds), or set PARLEY_BUILD_DIR." >&2
    exit 1
  fi
fi
for bin in "$PARLEYD" "$PARLEY" "$PARLEYCTL"; do
  [ -x "$bin" ] || { echo "policy-demo: $bin was not built" >&2; exit 1; }
done

# ----------------------------------------------------------------- parleyd
TMP="$(mktemp -d "${TMPDIR:-/tmp}/parley-policy-demo.XXXXXX")"
DATA="$TMP/data"
LOG="$TMP/parleyd.log"
export PARLEY_HOME="$TMP/clients"  # the users' profiles (one per user)
PID=
cleanup() {
  local rc=$?
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  if [ "${PARLEY_DEMO_KEEP:-0}" = "1" ]; then
    echo "kept $TMP (parleyd log: $LOG)"
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

banner "Start a fresh parleyd with the Signal-style policy"
explain "A new server on a temporary data directory, on free loopback ports: one for the" \
        "users' clients, one (the admin service) for the operator's tool, parleyctl." \
        "--policy preset:signal: every conversation is end-to-end encrypted (E2EE), locked."
echo_cmd parleyd --data-dir "$DATA" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --port-file "$TMP/port" --admin-port-file "$TMP/admin-port" --policy preset:signal
"$PARLEYD" --data-dir "$DATA" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --port-file "$TMP/port" --admin-port-file "$TMP/admin-port" --policy preset:signal \
  >"$LOG" 2>&1 &
PID=$!
# parleyd writes the admin port file, then the port file, once it serves.
for _ in $(seq 1 300); do  # at most 30 s
  [ -s "$TMP/port" ] && [ -s "$TMP/admin-port" ] && break
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "policy-demo: parleyd exited at start; its log:" >&2; tail -n 20 "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
if ! [ -s "$TMP/port" ] || ! [ -s "$TMP/admin-port" ]; then
  echo "policy-demo: parleyd did not start serving within 30 s; its log:" >&2; tail -n 20 "$LOG" >&2; exit 1
fi
SERVER="127.0.0.1:$(tr -dc 0-9 <"$TMP/port")"
ADMIN="127.0.0.1:$(tr -dc 0-9 <"$TMP/admin-port")"
CA="$DATA/tls/ca.pem"
TOKEN="$DATA/admin/operator.token"
CTL_FLAGS=(--server "$ADMIN" --ca "$CA" --token-file "$TOKEN")
echo "parleyd (pid $PID) serves clients on $SERVER and parleyctl on $ADMIN (TLS, CA $CA)"
explain "parleyd wrote an initial operator token to $TOKEN." \
        "Below, 'parleyctl' is short for: parleyctl --server $ADMIN --ca $CA --token-file $TOKEN"
ctl whoami
ctl policy history

# ----------------------------------------------------------------- users
banner "Four users and three conversations"
explain "alice and bob are adults, kim is a minor (--age-band minor), shop is a business" \
        "account (--kind business). Each has a profile (a device) of its own."
as alice --server "$SERVER" --ca "$CA" register alice --display-name Alice --age-band adult --region DE
as bob --server "$SERVER" --ca "$CA" register bob --display-name Bob --age-band adult --region DE
as kim --server "$SERVER" --ca "$CA" register kim --display-name Kim --age-band minor --region DE
as shop --server "$SERVER" --ca "$CA" register shop --display-name "Corner Shop" --kind business --region DE

say "alice opens a chat with bob and one with shop, and a group with bob and kim"
as alice chat create bob
as alice chat create shop
GROUP_OUT="$(as alice group create "Book club" --members bob,kim)"
printf '%s\n' "$GROUP_OUT"
GROUP="$(sed -n 's/^created \(c_[0-9a-f]*\) .*/\1/p' <<<"$GROUP_OUT" | head -n 1)"
[ -n "$GROUP" ] || { echo "policy-demo: could not create the group" >&2; exit 1; }
explain "Under the signal policy all three are E2EE, locked: the server cannot read them."
as alice conversations
say "kim's client receives the group (her backlog)"
as kim listen --count 1 --timeout 5

say "alice writes to bob in their E2EE chat"
explain "The client encrypts for each of bob's devices (Signal protocol); parleyd only routes" \
        "ciphertext and would refuse a plaintext body here. bob's client decrypts it."
as alice send @bob "hi bob, only your devices can read this"
as bob listen --count 2 --timeout 5
say "alice asks to turn end-to-end encryption off: the signal policy locks it"
refused as alice insecure @bob --yes

# ----------------------------------------------------------------- instagram
banner "Switch to instagram-2026: E2EE is withdrawn, with 30 days' notice"
explain "The operator first asks what the document would change (nothing is applied)."
ctl policy plan policy/presets/instagram-2026.yaml
explain "Existing E2EE conversations are not downgraded at once: the policy says" \
        "'existing_e2ee: downgrade, notice_days: 30', so each one gets an announced change."
ctl policy apply policy/presets/instagram-2026.yaml -m "Instagram 2026: end-to-end encryption is withdrawn after a 30-day notice"

say "What alice sees: still E2EE, with a PENDING change to transport"
as alice conversations
as alice info @bob
say "What kim sees: a SECURITY CHANGE event in the group, with the notice and a WARNING"
as kim listen --count 1 --timeout 5
explain "This demo cannot wait 30 days. On the effective date parleyd would switch these" \
        "conversations to transport mode (server-readable) and every member would get another" \
        "SECURITY CHANGE with a WARNING. Until then they stay E2EE (encrypted):"
as alice send @bob "can the server read this yet? (no: still encrypted)"

# ----------------------------------------------------------------- tiktok
banner "Switch to tiktok: server-readable messages, moderation and scanning"
ctl policy plan policy/presets/tiktok.yaml
explain "tiktok has no 'existing_e2ee: downgrade', so Parley's rule 3 applies: existing E2EE" \
        "conversations are kept E2EE, and the downgrade announced under instagram-2026 is" \
        "called off. Only conversations created from now on are server-readable."
ctl policy apply policy/presets/tiktok.yaml -m "TikTok-style: server-readable, moderated direct messages"
say "kim's group: still E2EE, and no downgrade scheduled any more"
as kim listen --count 1 --timeout 5
as kim info "$GROUP"

say "bob opens a NEW chat with kim: it is server-readable (transport)"
as bob chat create kim
as bob send @kim "Hi kim, this one the server can read."
as kim listen --count 1 --timeout 5
say "kim asks for end-to-end encryption: the tiktok policy locks the mode"
refused as kim secure @bob

# ----------------------------------------------------------------- rollback
banner "Roll back to the signal revision (r1)"
explain "A rollback restores the content of an earlier revision as a new revision." \
        "The plan for the signal document shows what that will do: bob and kim's" \
        "transport chat is upgraded to E2EE (an E2EE rule never weakens anything)."
ctl policy plan policy/presets/signal.yaml
ctl policy rollback 1 -m "Back to Signal-style: end-to-end encryption everywhere"
say "kim is told that her chat with bob is now end-to-end encrypted"
as kim listen --count 1 --timeout 5
as kim conversations
explain "From now on kim's client encrypts in that chat:"
as kim send @bob "this one is end-to-end encrypted"

# ----------------------------------------------------------------- protect-minors
banner "Switch to protect-minors: E2EE, except minors with adult strangers"
ctl policy plan policy/presets/protect-minors.yaml
explain "The group (alice, bob, kim) and bob-kim chat match the rule for a minor with adults" \
        "who are not their contacts, which is transport-only. They are E2EE already, and" \
        "protect-minors keeps existing E2EE (rule 3): nothing changes for them."
ctl policy apply policy/presets/protect-minors.yaml -m "Protect minors: scanned chats between minors and adult strangers"
ctl policy explain "$GROUP"

say "shop (a business, age unknown) opens a NEW chat with kim"
as shop chat create kim
explain "kim's client says why the chat is server-readable, and shows the policy's notice:"
as kim info @shop
refused as kim secure @shop
as shop send @kim "Hi! 20% off everything today."
as kim listen --count 1 --timeout 5

# ----------------------------------------------------------------- records
banner "The operator's records"
explain "Every revision is kept, with its author and comment; the rollback names the" \
        "revision it restored. The audit log records every admin call."
ctl policy history
ctl conversations list
ctl audit tail -n 10

if [ "$UNEXPECTED" -gt 0 ]; then
  printf '\n%s%d step(s) were accepted where a refusal was expected (see "UNEXPECTED" above).%s\n' \
    "$BOLD" "$UNEXPECTED" "$OFF"
  exit 1
fi
printf '\n%sDone.%s parleyd is stopped and its temporary data removed.\n' "$BOLD" "$OFF"
