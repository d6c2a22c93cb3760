#!/usr/bin/env bash
# Debian's Chromium for the end-to-end browser test (Playwright drives it; no browser download).
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "browser: chromium missing; install Debian's chromium package" >&2; exit 0; fi
echo "browser: installing Debian's chromium"
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
