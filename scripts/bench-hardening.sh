#!/usr/bin/env bash
# Hardening must not cost speed: runs the attach benchmark (signaling only) and the roaming
# benchmark (attach to resolvable) with a baseline build and with this tree's build,
# alternating them ROUNDS times (default 2) in one run so that neither gains from going
# second, and prints both sets of figures (the mean of each build's p50s) and their ratios.
#   BASE=REV   the baseline commit (default: the last one before the private-network work)
# The baseline is built in a temporary worktree with its own target directory. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-46a7cb8}
[ "$(id -u)" -eq 0 ] || { echo "bench-hardening: needs root" >&2; exit 1; }
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/base" "$base" >/dev/null 2>&1
echo "building the baseline ($base) and this tree ($(git rev-parse --short HEAD)) ..."
(cd "$work/base" && CARGO_TARGET_DIR="$PWD/../target-base" cargo build --release -q)
cargo build --release -q
# The baseline's binary: target-base/release, or target-base/<host tuple>/release for a
# baseline that names its target (.cargo/config.toml).
base_bin() { ls "$work"/target-base/release/roamlab "$work"/target-base/*/release/roamlab 2>/dev/null | head -1; }
declare -A bins=([baseline]="$(base_bin)" [current]="$(scripts/roamlab-bin)")
rounds=${ROUNDS:-2}
for round in $(seq "$rounds"); do
  for which in baseline current; do
    echo "== $which, round $round"
    ROAMLAB_BIN=${bins[$which]} ./scripts/bench-attach.sh | tee -a "$work/attach.$which"
    ROAMLAB_BIN=${bins[$which]} ./scripts/bench-roaming.sh | tee -a "$work/roaming.$which"
  done
done
mean() { awk '{s += $1; n++} END {printf "%.3f", s / n}'; }
a_p50() { awk '/^  attach / && $5 == "p99" {print $3}' "$1" | mean; }
r_p50() { awk '/^attach-to-resolvable/ {for (i = 1; i <= NF; i++) if ($i == "p50") {v = $(i + 1); sub(/,/, "", v); print v}}' "$1" | mean; }
echo
echo "hardening vs baseline ($base), this machine, one run:"
printf '  %-34s %10s %10s %8s\n' "" baseline current ratio
for m in "signaling attach p50 (ms)|a_p50|attach" "attach-to-resolvable p50 (ms)|r_p50|roaming"; do
  IFS='|' read -r label fn file <<< "$m"
  b=$($fn "$work/$file.baseline"); c=$($fn "$work/$file.current")
  printf '  %-34s %10s %10s %8s\n' "$label" "$b" "$c" "$(awk -v b="$b" -v c="$c" 'BEGIN {printf "%.2fx", c/b}')"
done
echo "  target: current within 10 % of the baseline (ratio <= 1.10)"
