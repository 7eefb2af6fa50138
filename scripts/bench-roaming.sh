#!/usr/bin/env bash
# Roaming benchmark: attach-to-resolvable latency — from the start of `roamlab attach`
# (namespace, link, agent, Milenage attach, DHCP, both DNS updates) until the lab's resolver
# answers the new address to fixed1 — over CYCLES (default 100) attach/detach cycles, p50
# and p99; then CONCURRENT (default 200) terminals attaching at once, all checked forward and
# reverse afterwards, with the total time and the peak memory of all agents. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${CYCLES:-100}
concurrent=${CONCURRENT:-200}
[ "$(id -u)" -eq 0 ] || { echo "bench-roaming: needs root" >&2; exit 1; }
# ROAMLAB_BIN runs another build (bench-hardening.sh compares two in one run).
if [ -z "${ROAMLAB_BIN:-}" ]; then cargo build --release -q; fi
bin=${ROAMLAB_BIN:-$(scripts/roamlab-bin)}
lab=roambench
work=$(mktemp -d)
trap '"$bin" down $lab >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# The default lab with a /22 cell (room for 1000 terminals) and enough subscribers.
# The concurrent phase uses subscribers the cycles did not: a terminal that comes back with
# another address waits out the resolver's cache of its old one (its TTL), which is DNS, not us.
subscribers=$(( cycles + concurrent ))
{
  sed -e "s/^name: roam$/name: $lab/" \
      -e 's|addresses: \[198.51.100.1/24, 198.51.100.53/24\]|addresses: [198.18.64.1/22, 198.51.100.53/24]|' \
      -e 's|pool: { start: 198.51.100.100, end: 198.51.100.199 }|pool: { start: 198.18.64.10, end: 198.18.67.250 }|' \
      topologies/roaming.yaml
  for i in $(seq 1 "$subscribers"); do
    printf '  t%d:\n    imsi: "00101%010d"\n    hostname: t%d.home.example\n    home: home\n' "$i" $((7000 + i)) "$i"
    printf '    k: %032x\n    opc: cd63cb71954a9f4e48a5994e37a02baf\n' $((0x7eed0000 + i))
  done
} > "$work/lab.yaml"
"$bin" up -t "$work/lab.yaml" >/dev/null
us() { echo "${EPOCHREALTIME/./}"; }

echo "roamlab roaming benchmark: $(nproc) cores, $subscribers subscribers"
: > "$work/lat"
for i in $(seq 1 "$cycles"); do
  t0=$(us)
  "$bin" attach "t$i" --lab $lab > "$work/attach.out"
  t1=$(us)
  grep -q "resolves to it from fixed1" "$work/attach.out" || { echo "t$i: not resolvable: $(cat "$work/attach.out")"; exit 1; }
  echo $((t1 - t0)) >> "$work/lat"
  "$bin" detach "t$i" --lab $lab >/dev/null
done
pct() { sort -n "$work/lat" | awk -v p="$1" '{a[NR]=$1} END {i=int((p/100)*(NR-1)+0.5)+1; printf "%.1f", a[i]/1000}'; }
p50=$(pct 50); p99=$(pct 99)
echo "attach-to-resolvable over $cycles cycles: p50 $p50 ms, p99 $p99 ms (max $(pct 100) ms)"

t0=$(us)
for i in $(seq $((cycles + 1)) $((cycles + concurrent))); do
  "$bin" attach "t$i" --lab $lab > "$work/c$i.out" 2>&1 &
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=$((failed + 1)); done
t1=$(us)
total=$(awk -v u=$((t1 - t0)) 'BEGIN {printf "%.2f", u/1e6}')
echo "$concurrent concurrent attaches: $((concurrent - failed)) succeeded in $total s"

wrong=0
for i in $(seq $((cycles + 1)) $((cycles + concurrent))); do
  addr=$(sed -n 's/.* has address \([0-9.]*\);.*/\1/p' "$work/c$i.out")
  fwd=$("$bin" exec --lab $lab fixed1 -- dig +short "t$i.home.example")
  rev=$("$bin" exec --lab $lab fixed2 -- dig +short -x "$addr")
  [ -n "$addr" ] && [ "$fwd" = "$addr" ] && [ "$rev" = "t$i.home.example." ] || wrong=$((wrong + 1))
done
echo "resolvable forward and reverse from fixed hosts: $((concurrent - wrong)) of $concurrent"
peak_kb=0
for pid in $("$bin" status $lab --json | jq -r '.agents[].pid'); do
  kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  peak_kb=$((peak_kb + ${kb:-0}))
done
agents=$("$bin" status $lab --json | jq '.agents | length')
echo "peak resident memory of all $agents agents together: $(awk -v k=$peak_kb 'BEGIN {printf "%.1f", k/1024}') MB"

echo
echo "targets:"
echo "  p50 $p50 ms <= 50 ms: $(awk -v v="$p50" 'BEGIN {print (v <= 50) ? "meets" : "MISSES"}')"
echo "  p99 $p99 ms <= 200 ms: $(awk -v v="$p99" 'BEGIN {print (v <= 200) ? "meets" : "MISSES"}')"
echo "  $concurrent concurrent attaches all correct within 10 s: $(awk -v t="$total" -v f=$((failed + wrong)) 'BEGIN {print (t <= 10 && f == 0) ? "meets" : "MISSES"}') ($total s, $((failed + wrong)) wrong)"
