#!/usr/bin/env bash
# Runs the demo twice on the same data with a warm stack install and prints the stage times of each run.
# The first run ingests, the second finds the same file and reuses the table versions.
# Usage: bash bench/demo-stages.sh /path/to/hotel_reservations.csv
set -euo pipefail
data=${1:?usage: bench/demo-stages.sh DATA_CSV}
cd "$(dirname "$0")/.."
for run in 1 2; do
  start=$(date +%s.%N)
  output=$(npm run --silent demo -- --data "$data" --exit 2>/dev/null)
  end=$(date +%s.%N)
  awk -v run="$run" -v a="$start" -v b="$end" 'BEGIN { printf "run %s: %.1f s in all\n", run, b - a }'
  echo "$output" | grep -E 'Stage times|Metrics|Total time' | sed 's/^ */  /'
done
