#!/usr/bin/env bash
# Installs the tansu broker the integration tests run against, once per machine, outside the
# clone: into $HOOKLINE_TOOLS_DIR (default ~/.cache/hookline/tools). Skips when the pinned
# version is already there. Prints the binary's path on stdout.
set -euo pipefail

TANSU_VERSION=0.6.0
TOOLS_DIR="${HOOKLINE_TOOLS_DIR:-$HOME/.cache/hookline/tools}"
BIN="$TOOLS_DIR/bin/tansu"

if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
    echo "$BIN"
    exit 0
fi

echo "installing tansu $TANSU_VERSION into $TOOLS_DIR (about 10 minutes on a new machine)" >&2
mkdir -p "$TOOLS_DIR"
cargo install tansu --locked --version "$TANSU_VERSION" --features libsql,dynostore \
    --root "$TOOLS_DIR" --quiet >&2
"$BIN" --version >&2
echo "$BIN"
