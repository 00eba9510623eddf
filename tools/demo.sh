#!/usr/bin/env bash
# Demo: two users (and a second device) chatting through a running parleyd
# with the `parley` CLI. Usage: tools/demo.sh BUILD_DIR HOST:PORT CA_FILE
set -euo pipefail
B="${1:-build}"; SERVER="${2:-127.0.0.1:7443}"; CA="${3:-var/parley/tls/ca.pem}"
P="$B/clients/cli/parley"
export PARLEY_HOME; PARLEY_HOME="$(mktemp -d /tmp/parley-demo.XXXXXX)"
trap 'rm -rf "$PARLEY_HOME"' EXIT
S="$(date +%s | tail -c 6)"  # usernames stay unique across demo runs on the same data
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ parley'; printf ' %q' "$@"; printf '\n'; "$P" "$@"; }

say "Register alice (adult) and bob (minor)"
run --profile alice --server "$SERVER" --ca "$CA" register "alice$S" --display-name Alice --age-band adult --region DE
run --profile bob --server "$SERVER" --ca "$CA" register "bob$S" --display-name Bob --age-band minor --region FR

say "Alice links a second device (her laptop)"
CODE="$("$P" --profile alice --json devices link-code | sed -n 's/.*"code":"\([0-9a-f]*\)".*/\1/p')"
run --profile alice-laptop --server "$SERVER" --ca "$CA" link "$CODE" --device-name laptop
run --profile alice devices

say "Alice starts a direct conversation with bob and writes"
CONV="$("$P" --profile alice --json chat create "bob$S" | sed -n 's/.*"conversation_id":"\(c_[0-9a-f]*\)".*/\1/p')"
run --profile alice send "$CONV" "Hi Bob, this is Alice."
run --profile alice send "$CONV" "Transport mode: TLS to the server, which can read this."

say "Bob listens (drains his backlog), then replies"
run --profile bob listen --count 2 --timeout 5
run --profile bob send "$CONV" "Hi Alice! Got both."

say "Alice's laptop receives her own messages' copies and Bob's reply"
run --profile alice-laptop listen --count 3 --timeout 5

say "Conversations and history"
run --profile bob conversations
run --profile alice history "$CONV"
say "Alice turns on end-to-end encryption (the default policy lets either participant of a 1:1 chat do so)"
run --profile alice secure "$CONV"
OUT="$(run --profile alice send "$CONV" "From now on only our devices can read this.")"
echo "$OUT"
SEQ="$(printf '%s\n' "$OUT" | sed -n 's/^sent \[.* #\([0-9]*\)\].*/\1/p')"
say "Bob sees the security change, then the message, decrypted on his device"
run --profile bob listen --count 2 --timeout 5
# Safety in E2EE mode: the report carries the plaintext, the franking key
# from inside the ciphertext and the server's stamp; parleyd checks both.
# Needs the admin service (parleyd's default 127.0.0.1:7444) and the
# operator token parleyd wrote into its data directory on first start.
ADMIN="${PARLEY_ADMIN:-127.0.0.1:7444}"
TOKEN="${PARLEY_ADMIN_TOKEN_FILE:-$(dirname "$(dirname "$CA")")/admin/operator.token}"
C="$B/tools/parleyctl/parleyctl"
if [ -r "$TOKEN" ] && [ -x "$C" ] && [ -n "$SEQ" ]; then
  ctl() { printf '$ parleyctl'; printf ' %q' "$@"; printf '\n'; "$C" --server "$ADMIN" --ca "$CA" --token-file "$TOKEN" "$@"; }
  say "Bob reports Alice's end-to-end encrypted message: it is revealed with its message-franking proof"
  run --profile bob report "$CONV" "$SEQ" --reason harassment --comment "demo report"
  say "The operator makes a moderator token; the moderator sees only what Bob revealed, verified"
  MOD="$PARLEY_HOME/moderator.token"
  ctl tokens create --role moderator --name "demo-mod-$S" --out "$MOD" >/dev/null
  echo "(moderator token written to $MOD, mode 0600)"
  ctlm() { printf '$ parleyctl --token-file moderator.token'; printf ' %q' "$@"; printf '\n'; "$C" --server "$ADMIN" --ca "$CA" --token-file "$MOD" "$@"; }
  ctlm reports list --status open
  REP="$("$C" --server "$ADMIN" --ca "$CA" --token-file "$MOD" --json reports list --status open | sed -n 's/.*"report_id":"\(rep-[0-9]*\)".*/\1/p' | tail -n 1)"
  [ -n "$REP" ] && ctlm reports show "$REP"
  say "The audit log records the moderator's reading of the report; its hash chain verifies"
  ctl audit verify
fi
say "Done. Every message line says whether it is end-to-end encrypted or readable by the server."
