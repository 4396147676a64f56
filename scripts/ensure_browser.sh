#!/usr/bin/env bash
# Make sure headless Chromium and its driver (Debian's `chromium`, `chromium-driver`) are
# installed for the browser smoke test: installed with apt-get when missing and root,
# else a warning (the browser test then skips, saying why). Never downloads a browser
# build of its own.
set -euo pipefail

log() { echo "ensure_browser: $*" >&2; }

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "chromium or chromedriver missing and cannot apt-get install them: the browser test will be skipped"
    exit 0
fi
log "installing chromium and chromium-driver with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update >&2
apt-get install -y --no-install-recommends chromium chromium-driver >&2
