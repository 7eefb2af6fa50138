#!/usr/bin/env bash
# Attach benchmark: the real HLR and VLR agents of a lab with 100 extra subscribers,
# driven over the cell socket by in-process terminals (Milenage included, namespace
# creation excluded):
#   - latency of CYCLES (default 500) attach + detach cycles of one terminal, p50/p99;
#   - throughput of 100 terminals attaching at once (median of ROUNDS rounds);
#   - resident memory (peak and now) of the HLR and VLR agents afterwards.
# Prints the figures beside the targets. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${CYCLES:-500}
rounds=${ROUNDS:-5}
[ "$(id -u)" -eq 0 ] || { echo "bench-attach: needs root" >&2; exit 1; }
# ROAMLAB_BIN runs another build (bench-hardening.sh compares two in one run).
if [ -z "${ROAMLAB_BIN:-}" ]; then cargo build --release -q; fi
bin=${ROAMLAB_BIN:-$(scripts/roamlab-bin)}
lab=attachbench
work=$(mktemp -d)
trap '"$bin" down $lab >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
{
  sed "s/^name: roam$/name: $lab/" topologies/roaming.yaml
  for i in $(seq 1 100); do
    printf '  t%d:\n    imsi: "00101%010d"\n    hostname: t%d.home.example\n    home: home\n' "$i" $((5000 + i)) "$i"
    printf '    k: %032x\n    opc: cd63cb71954a9f4e48a5994e37a02baf\n' $((0x5eed0000 + i))
  done
} > "$work/lab.yaml"
"$bin" up -t "$work/lab.yaml" >/dev/null
echo "roamlab attach benchmark: $(nproc) cores, lab with $(grep -c 'imsi:' "$work/lab.yaml") subscribers"
"$bin" bench-attach --lab $lab --cycles "$cycles" --concurrent 100 --rounds "$rounds" | tee "$work/out"
mem() { # AGENT -> "peak MB / now MB"
  local pid
  pid=$("$bin" status $lab --json | jq -r --arg name "$1" '.agents[] | select(.name == $name) | .pid')
  awk '/VmHWM/ {p=$2} /VmRSS/ {r=$2} END {printf "%.1f MB peak, %.1f MB now", p/1024, r/1024}' "/proc/$pid/status"
}
hlr=$(mem hlr)
vlr=$(mem vlr)
echo "resident memory: HLR $hlr; VLR $vlr"
p50=$(awk '/^  attach / {print $3}' "$work/out")
rate=$(awk '/^concurrent:/ {for (i = 1; i <= NF; i++) if ($i == "median") print $(i + 1)}' "$work/out")
echo
echo "targets:"
echo "  attach p50 $p50 ms <= 5 ms: $(awk -v v="$p50" 'BEGIN {print (v <= 5) ? "meets" : "MISSES"}')"
echo "  $rate attaches/s with 100 concurrent >= 500: $(awk -v v="$rate" 'BEGIN {print (v >= 500) ? "meets" : "MISSES"}')"
for a in HLR VLR; do
  peak=$( [ $a = HLR ] && echo "$hlr" || echo "$vlr" )
  echo "  $a peak resident ${peak%% MB*} MB <= 20 MB: $(awk -v v="${peak%% MB*}" 'BEGIN {print (v <= 20) ? "meets" : "MISSES"}')"
done
