#!/usr/bin/env bash
# Installs the Node.js packages the interop tests check Hookline's wire format against (npm
# `standardwebhooks`, `jose`, `avsc`, `@grpc/grpc-js`, pinned by interop/package-lock.json) and
# the Python ones (`grpcio-reflection`, pinned by interop/requirements.txt, in a virtual
# environment under python/), once per machine, outside
# the clone: into $HOOKLINE_INTEROP_CACHE (default ~/.cache/hookline/interop)/<hash>, where <hash>
# covers everything in interop/ (lock file and scripts), so an unchanged tree is never installed
# twice and a changed one never reuses a stale install. Prints the directory on stdout; the tests
# run `node <dir>/<script>.mjs`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOURCE="$REPO_ROOT/interop"
CACHE="${HOOKLINE_INTEROP_CACHE:-$HOME/.cache/hookline/interop}"

for tool in node npm python3 sha256sum; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "ensure-interop: \`$tool\` is not installed; the interop tests need Node.js >= 20 with npm and Python >= 3.9 with venv" >&2
        exit 1
    fi
done

# The scripts are ES modules, which resolve `import "jose"` from node_modules next to them (ESM
# ignores NODE_PATH), so they are copied into the install directory.
FILES=(package.json package-lock.json requirements.txt)
while IFS= read -r script; do FILES+=("$script"); done < <(cd "$SOURCE" && ls -1 -- *.mjs *.py | LC_ALL=C sort)
HASH="$(cd "$SOURCE" && cat -- "${FILES[@]}" | sha256sum | cut -c1-16)"
DIR="$CACHE/$HASH"

if [[ -f "$DIR/.installed" ]]; then
    echo "$DIR"
    exit 0
fi

echo "ensure-interop: installing the interop packages into $DIR" >&2
mkdir -p "$CACHE"
STAGING="$(mktemp -d "$CACHE/.staging.XXXXXX")"
chmod 755 "$STAGING"
trap 'rm -rf "$STAGING"' EXIT
(cd "$SOURCE" && cp -- "${FILES[@]}" "$STAGING/")
# --ignore-scripts: nothing here needs an install script, and none should run on a CI machine.
if ! (cd "$STAGING" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2); then
    echo "ensure-interop: \`npm ci\` failed in $STAGING (is the npm registry reachable?)" >&2
    exit 1
fi
# Wheels only: nothing is compiled on a CI machine. The environment is used through its own
# python (python/bin/python), which keeps working once the directory is renamed below.
if ! python3 -m venv "$STAGING/python" >&2 \
    || ! "$STAGING/python/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: -r "$STAGING/requirements.txt" >&2; then
    echo "ensure-interop: installing the Python packages failed in $STAGING/python (is PyPI reachable? is python3-venv installed?)" >&2
    exit 1
fi
touch "$STAGING/.installed"
# Rename is atomic: a concurrent run that finished first wins, and this copy is discarded.
if ! mv -T "$STAGING" "$DIR" 2>/dev/null; then
    [[ -f "$DIR/.installed" ]] || { echo "ensure-interop: cannot move the install into $DIR" >&2; exit 1; }
fi
echo "$DIR"
