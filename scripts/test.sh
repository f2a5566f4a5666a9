#!/usr/bin/env bash
# Runs every test, browser tests included, after installing what a fresh
# Debian machine lacks (Chromium, ChromeDriver, a Java runtime for the Nu HTML
# Checker, and the npm packages vnu-jar and axe-core). Nothing is skipped.
#
# The tests run in a copy of the repository's files placed in a directory of
# its own, with nothing beside it: a build step or test that reads outside
# the repository (as the tests once read a sibling folder of test data)
# fails here as it would for a person who has just cloned it. The copy
# shares this checkout's build cache, so it costs no second build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

scripts/browser-deps.sh

# The independent EWS client the simulator is checked against (EN-6).
if ! python3 -c "import exchangelib" 2>/dev/null; then
    echo "== installing exchangelib (pip)"
    python3 -m pip install --quiet --disable-pip-version-check exchangelib==5.6.0
fi
python3 -c "import exchangelib; print('exchangelib', exchangelib.__version__, 'is present')"

echo "== no file refers to a path outside the repository"
# A relative path that climbs out of the repository into a sibling folder.
if git ls-files -z --cached --others --exclude-standard | xargs -0 grep -nIE '\.\./(\.\./)*shared\b' --; then
    echo "test.sh: the files above refer to a folder outside the repository" >&2
    exit 1
fi

echo "== the structure drawing: no loose files, no arrows up, no cycles"
python3 scripts/structure.py --check

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

# A fixed place, so that the copy's build artifacts are reused from one run
# to the next (cargo keys a package's artifacts by its path).
standalone="${TMPDIR:-/tmp}/presence-gateway-standalone"
rm -rf "$standalone"
mkdir -p "$standalone/repo"
echo "== copying the repository's files to $standalone/repo (nothing beside it)"
git ls-files -z --cached --others --exclude-standard |
    tar --null -T - --ignore-failed-read -cf - 2>/dev/null |
    tar -xpf - -C "$standalone/repo"
# The browser checkers are installed by npm ci from package-lock.json; the
# copy takes the ones installed above instead of downloading them again.
if [[ -d node_modules ]]; then
    cp -a node_modules "$standalone/repo/"
fi

# A private PostgreSQL server for the second pass (CL-5), stopped however
# this script ends.
pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/presence-gateway-pg.XXXXXX")"
stop_postgres() {
    "$repo/scripts/postgres.sh" stop "$pg_dir/cluster" || true
    rm -rf "$pg_dir"
}
trap stop_postgres EXIT
echo "== starting a private PostgreSQL server"
pg_url="$(scripts/postgres.sh start "$pg_dir/cluster")"
echo "PostgreSQL at $pg_url"

summary() {
    # The runners' closing lines, summed: "N passed; M failed".
    grep -E '^test result:' "$1" |
        awk '{for (i = 1; i <= NF; i++) {if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i}}
             END {printf "%d passed, %d failed\n", p, f}'
}

echo "== cargo test on SQLite: every test (in $standalone/repo)"
echo "   (cluster::cluster_pg:: needs the PostgreSQL server: it runs in the next pass)"
cd "$standalone/repo"
CARGO_TARGET_DIR="$repo/target" cargo test --locked -- --test-threads=4 --skip cluster::cluster_pg:: 2>&1 |
    tee "$pg_dir/sqlite.log"

# Every test of the store, the console, the engine and the shell lives in
# tests/it (src/ has no database tests): the same binary again, each TestApp
# on a fresh PostgreSQL database.
echo "== cargo test on PostgreSQL: the integration tests (tests/it) again"
PRESENCE_GATEWAY_TEST_POSTGRES="$pg_url" CARGO_TARGET_DIR="$repo/target" \
    cargo test --locked --test it -- --test-threads=4 2>&1 | tee "$pg_dir/postgres.log"

echo "== both passes"
echo "sqlite: $(summary "$pg_dir/sqlite.log")"
echo "postgresql: $(summary "$pg_dir/postgres.log")"
