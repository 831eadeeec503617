#!/usr/bin/env bash
# Builds the mobile-bindings library and the bindgen, generates the Python, Kotlin and Swift
# bindings into $CARGO_TARGET_DIR/bindings/ (target/ by default), copies the hand-written
# helpers of mobile-bindings/foreign/ next to them, and runs the Python and Kotlin test suites, which drive the
# generated bindings against a live sync-server. Swift sources are generated but cannot be
# compiled on Linux (see mobile-bindings/README.md).
#
# Needs: python3 (pytest is installed into a virtualenv when missing); for Kotlin, java, JNA
# (Debian's libjna-java) and kotlinc (fetched from npm's kotlin-compiler when not on PATH);
# kotlinx-coroutines (the generated `suspend` functions and the Flow helpers need it) is the
# one the Kotlin compiler ships in its lib/, or $KOTLINX_COROUTINES_JAR.
# SKIP_KOTLIN=1 skips the Kotlin suite.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
cargo build -p mobile-bindings -p sync-server
cargo build -p uniffi-bindgen
lib="$target/debug/libsession_sync.so"
out="$target/bindings"
rm -rf "$out/python" "$out/kotlin" "$out/swift"
for lang in python kotlin swift; do
    "$target/debug/uniffi-bindgen" generate --config mobile-bindings/uniffi-bindgen.toml --library "$lib" \
        --language "$lang" --out-dir "$out/$lang" --no-format
done
cp "$lib" "$out/python/"
cp mobile-bindings/foreign/kotlin/*.kt "$out/kotlin/uniffi/session_sync/"
cp mobile-bindings/foreign/swift/*.swift "$out/swift/"

echo "== Python bindings"
python=python3
if ! "$python" -c "import pytest" 2>/dev/null; then
    [ -x "$out/venv/bin/python" ] || "$python" -m venv "$out/venv"
    python="$out/venv/bin/python"
    "$python" -c "import pytest" 2>/dev/null || "$python" -m pip install --quiet pytest
fi
SYNC_SERVER_BIN="$target/debug/sync-server" PYTHONPATH="$out/python" \
    "$python" -m pytest -q -p no:cacheprovider mobile-bindings/tests/python

if [ "${SKIP_KOTLIN:-0}" = 1 ]; then
    echo "== Kotlin bindings: skipped (SKIP_KOTLIN=1)"
    exit 0
fi
echo "== Kotlin bindings"
kotlinc=$(command -v kotlinc || true)
if [ -z "$kotlinc" ]; then
    kotlinc="$out/kotlin-compiler/node_modules/kotlin-compiler/bin/kotlinc"
    [ -x "$kotlinc" ] || npm install --silent --no-audit --no-fund --prefix "$out/kotlin-compiler" kotlin-compiler@2.4.20
fi
jna=/usr/share/java/jna.jar
coroutines="${KOTLINX_COROUTINES_JAR:-$(dirname "$(readlink -f "$kotlinc")")/../lib/kotlinx-coroutines-core-jvm.jar}"
[ -f "$coroutines" ] || { echo "no kotlinx-coroutines jar at $coroutines (set KOTLINX_COROUTINES_JAR)"; exit 2; }
"$kotlinc" -nowarn -cp "$jna:$coroutines" -include-runtime -d "$out/kotlin-tests.jar" \
    "$out"/kotlin/uniffi/session_sync/*.kt mobile-bindings/tests/kotlin/*.kt
SYNC_SERVER_BIN="$target/debug/sync-server" \
    java -Djna.library.path="$target/debug" -cp "$out/kotlin-tests.jar:$jna:$coroutines" BindingsTestKt
