#!/usr/bin/env bash
# Takes docs/notes-desktop.png: the real notes-desktop window under Xvfb, on a local copy that
# a second device (sync-cli) filled with notes and a conflicting edit, against a real
# sync-server with the `reject` policy on `notes` (so the conflicts panel has something).
#
#   apps/notes-desktop/scripts/screenshot.sh [OUT.png]
#
# Needs Xvfb, xdotool and ImageMagick's `import` (Debian: apt-get install xvfb xdotool
# imagemagick) and Mesa's software OpenGL (libgl1-mesa-dri, libegl1), which eframe's glow
# renderer draws with when there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${1:-docs/notes-desktop.png}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build -p sync-server -p sync-cli -p notes-desktop
BIN=$TARGET/debug

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=${PORT:-18787}
URL=http://127.0.0.1:$PORT
server() { "$BIN/sync-server" --data "$WORK/data" "$@"; }
"$BIN/sync-server" --data "$WORK/data" serve --listen "127.0.0.1:$PORT" --policy notes=reject --no-demo \
    >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
server user add alice >/dev/null
server db create notes --owner alice >/dev/null
LAPTOP=$(server token issue alice --device laptop)
PHONE=$(server token issue alice --device phone)

cli() { "$BIN/sync-cli" "$@"; }
note() { # DB TITLE BODY AT
    cli exec "$1" "INSERT INTO notes(id, title, body, updated_at) VALUES (sync_id(), ?1, ?2, ?3)" "$2" "$3" "$4" >/dev/null
}
cli init "$WORK/phone.db" --server "$URL" --token "$PHONE" --database notes --fts notes:title,body >/dev/null
note "$WORK/phone.db" "Groceries" "oat milk, lemons, basil, coffee beans" 1
note "$WORK/phone.db" "Reading list" "The Dispossessed; A Psalm for the Wild-Built" 2
note "$WORK/phone.db" "Trip to Lisbon" "train at 9:40, platform 4; museum on Tuesday" 3
note "$WORK/phone.db" "Weekly plan" "Mon: dentist. Wed: call the plumber." 4
cli sync "$WORK/phone.db" >/dev/null

# The laptop's copy (the app's file): it edits the plan too, but the phone's edit reaches the
# server first, so the laptop's is rejected by the `reject` policy and waits in its queue.
cli init "$WORK/laptop.db" --server "$URL" --token "$LAPTOP" --database notes --fts notes:title,body >/dev/null
cli exec "$WORK/phone.db" --sync "UPDATE notes SET body = 'Mon: dentist. Wed: plumber at 8.', updated_at = 5 WHERE title = 'Weekly plan'" >/dev/null
cli exec "$WORK/laptop.db" "UPDATE notes SET body = 'Mon: dentist. Thu: plumber.', updated_at = 6 WHERE title = 'Weekly plan'" >/dev/null
cli sync "$WORK/laptop.db" >/dev/null || true   # exit status 1: a transaction was rejected

export DISPLAY=:${DISPLAY_NUM:-77}
Xvfb "$DISPLAY" -screen 0 1000x680x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
sleep 1
LIBGL_ALWAYS_SOFTWARE=1 "$BIN/notes-desktop" "$WORK/laptop.db" >"$WORK/app.log" 2>&1 &
APP=$!
PIDS+=($APP)
WIN=""
for _ in $(seq 100); do
    WIN=$(xdotool search --pid "$APP" 2>/dev/null | head -1 || true)
    [ -n "$WIN" ] && break
    sleep 0.1
done
[ -n "$WIN" ] || { cat "$WORK/app.log"; echo "no window" >&2; exit 1; }
xdotool windowmove "$WIN" 0 0 windowsize "$WIN" 1000 680
sleep 2
# Open "Weekly plan" (the newest note, first in the list) in the editor, then search.
xdotool mousemove 50 92 click 1
sleep 0.5
xdotool mousemove 150 37 click 1
sleep 0.5
xdotool windowfocus --sync "$WIN"
xdotool type --delay 60 "plan OR lisbon"
sleep 1.5
xdotool mousemove 900 600
sleep 0.5
import -window root "$OUT"
echo "wrote $OUT"
