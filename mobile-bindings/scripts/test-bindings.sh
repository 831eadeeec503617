#!/usr/bin/env bash
# Builds the mobile-bindings library and the bindgen, generates the Python, Kotlin and Swift
# bindings into target/bindings/, and runs the Python test suite (which drives the generated
# bindings against a live sync-server). Swift sources are generated but cannot be compiled on
# Linux; Kotlin runs only with KOTLIN=1 (see mobile-bindings/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build -p mobile-bindings -p sync-server
cargo build -p uniffi-bindgen
lib=target/debug/libsession_sync.so
out=target/bindings
rm -rf "$out"
for lang in python kotlin swift; do
    target/debug/uniffi-bindgen generate --library "$lib" --language "$lang" --out-dir "$out/$lang" --no-format
done
cp "$lib" "$out/python/"

python=python3
if ! "$python" -c "import pytest" 2>/dev/null; then
    "$python" -m venv "$out/venv"
    python="$out/venv/bin/python"
    "$python" -m pip install --quiet pytest
fi
SYNC_SERVER_BIN=target/debug/sync-server PYTHONPATH="$out/python" \
    "$python" -m pytest -q -p no:cacheprovider mobile-bindings/tests/python
