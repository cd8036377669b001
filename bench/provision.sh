#!/usr/bin/env bash
# Measures first-run provisioning: a clean clone with empty npm, Go and uv caches, so every package is
# downloaded and the Temporal CLI is compiled from source. Needs network access to the registries.
# Usage: bash bench/provision.sh
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=$(mktemp -d /tmp/mlops-provision-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/repo"
cd "$work/repo"
export GOMODCACHE="$work/go-mod" GOCACHE="$work/go-build" UV_CACHE_DIR="$work/uv-cache" npm_config_cache="$work/npm-cache"

seconds() { date +%s.%N; }
report() { awk -v name="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%-28s %6.1f s\n", name, b - a }'; }

t0=$(seconds); npm ci --no-audit --no-fund >/dev/null 2>&1; t1=$(seconds)
npx tsx -e "require('./stack/provision').ensureTemporalCli()" >/dev/null; t2=$(seconds)
npx tsx -e "require('./stack/provision').ensurePythonEnv()" >/dev/null; t3=$(seconds)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(node --version), $(go version | cut -d' ' -f3)"
report "npm ci" "$t0" "$t1"
report "Temporal CLI (go install)" "$t1" "$t2"
report "Python env (uv sync)" "$t2" "$t3"
report "total" "$t0" "$t3"
