#!/usr/bin/env bash
# Make sure Debian's Chromium and ChromeDriver exist (the dashboard's browser test drives them
# headless with selenium), installing them with apt when not. Idempotent; meant for CI (root).
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- "$0" "$@"
    fi
    echo "ensure-chromium: Chromium is missing and installing it needs root (no sudo found)" >&2
    exit 1
fi

echo "ensure-chromium: installing chromium and chromium-driver with apt-get" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null

if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    echo "ensure-chromium: apt-get finished but /usr/bin/chromium or chromedriver is missing" >&2
    exit 1
fi
