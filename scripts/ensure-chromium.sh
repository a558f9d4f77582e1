#!/usr/bin/env bash
# Installs the browser the portal's tests drive headless: Debian's `chromium` package, once per
# machine (apt; skipped when present). Prints the browser binary's path on stdout (the binary
# itself rather than Debian's /usr/bin/chromium launcher script, which puppeteer does not need).
set -euo pipefail

find_browser() {
    for candidate in /usr/lib/chromium/chromium /usr/bin/chromium /usr/bin/chromium-browser; do
        if [[ -x "$candidate" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if browser="$(find_browser)"; then
    echo "$browser"
    exit 0
fi

echo "ensure-chromium: installing Debian's chromium (a few minutes on a new machine)" >&2
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "ensure-chromium: chromium is missing and installing it needs root (apt-get install chromium)" >&2
        exit 1
    fi
    SUDO=sudo
fi
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
browser="$(find_browser)" || { echo "ensure-chromium: chromium did not install" >&2; exit 1; }
"$browser" --version >&2
echo "$browser"
