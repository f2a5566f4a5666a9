#!/usr/bin/env bash
# Installs what the real-browser tests (tests/it/browser.rs) need on a Debian
# machine, only where it is missing, so running it again changes nothing:
#   - Chromium and its WebDriver (chromedriver), and a Java runtime for the
#     Nu HTML Checker (apt);
#   - openssl, which the troubleshooter tests use to sign with SHA-1;
#   - the Nu HTML Checker (vnu-jar) and axe-core, pinned in package-lock.json
#     (npm ci into node_modules/).
set -euo pipefail

cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }

missing=()
have chromium || missing+=(chromium)
have chromedriver || missing+=(chromium-driver)
have java || missing+=(default-jre-headless)
# Not a browser tool: the troubleshooter's SHA-1 test signs with openssl,
# since rcgen cannot.
have openssl || missing+=(openssl)

if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif have sudo; then
        as_root=(sudo)
    else
        echo "browser-deps: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "browser-deps: installing ${missing[*]}" >&2
    "${as_root[@]}" apt-get update
    # The whole set, so a partly installed machine ends up consistent.
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
        chromium chromium-driver default-jre-headless openssl
fi

if [[ ! -d node_modules/vnu-jar || ! -d node_modules/axe-core ]]; then
    if ! have npm; then
        echo "browser-deps: npm is missing; install Node.js and npm, then run this again" >&2
        exit 1
    fi
    echo "browser-deps: npm ci (vnu-jar, axe-core)" >&2
    npm ci --no-audit --no-fund
fi

echo "browser-deps: chromium, chromedriver, java, vnu-jar and axe-core are present" >&2
