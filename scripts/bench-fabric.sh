#!/usr/bin/env bash
# Benchmark: `roamlab up` + `down` of the default lab's fabric (no agents) against a plain
# `ip` script building the same objects (scripts/bench/fabric-ip.sh), alternating the two
# in one run; then the same with 100 extra nodes on one bridge. Prints medians, ratios,
# the targets, and the peak memory of `roamlab up`. Needs root.
#   RUNS=30 scripts/bench-fabric.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-30}
big_runs=${BIG_RUNS:-5}
[ "$(id -u)" -eq 0 ] || { echo "bench-fabric: needs root" >&2; exit 1; }
cargo build --release -q
bin=$(scripts/roamlab-bin)
ipscript=$PWD/scripts/bench/fabric-ip.sh
work=$(mktemp -d)
trap '$bin cleanup --lab rlbench >/dev/null 2>&1 || true; $bin cleanup --lab rlbig >/dev/null 2>&1 || true; $ipscript down ipbench; big_ip down; rm -rf "$work"' EXIT

us() { echo "${EPOCHREALTIME/./}"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ms() { awk -v u="$1" 'BEGIN {printf "%.1f", u/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v <= t) ? "meets" : "MISSES"}'; }

# --- 100 extra hosts on the core's bridge: a topology for roamlab, the same by hand with ip.
extra=100
{
  sed -n '/^links:/q;p' topologies/roaming.yaml
  for i in $(seq 1 $extra); do echo "  h$i: {}"; done
  echo
  sed -n '/^links:/,/^subscribers:/p' topologies/roaming.yaml | sed '$d'
  for i in $(seq 1 $extra); do
    echo "  - endpoints:"
    echo "      - { node: h$i, interface: eth0, addresses: [203.0.113.$((i + 100))/24] }"
    echo "      - { node: core, bridge: hosts }"
  done
} > "$work/big.yaml"
big_ip() {
  local lab=ipbig
  if [ "$1" = up ]; then
    "$ipscript" up $lab
    for i in $(seq 1 $extra); do
      local ns=$lab-h$i
      ip netns add $ns
      ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
      ip -n $ns link set lo up
      ip -n $lab-core link add hosts-h$i type veth peer name eth0 netns $ns
      ip -n $lab-core link set hosts-h$i master hosts
      ip -n $lab-core link set hosts-h$i up
      ip -n $ns link set eth0 up
      ip -n $ns addr add 203.0.113.$((i + 100))/24 dev eth0
      for net in 192.0.2.0/24 198.18.0.0/30 198.18.0.4/30 198.51.100.0/24; do
        ip -n $ns route add $net via 203.0.113.1 dev eth0
      done
    done
  else
    "$ipscript" down $lab
    for i in $(seq 1 $extra); do ip netns del $lab-h$i 2>/dev/null || true; done
  fi
}

# One timed round of each, alternating. Each `up` follows the previous `down` at once, so
# the kernel's background teardown of the last lab is paid inside the next measurement.
measure() { # NAME UPCMD DOWNCMD -> appends "up down" microseconds to $work/NAME
  local t0 t1 t2
  t0=$(us); eval "$2" >/dev/null; t1=$(us); eval "$3" >/dev/null; t2=$(us)
  echo "$((t1 - t0)) $((t2 - t1))" >> "$work/$1"
}
report() { # NAME -> "up_median down_median total_median" (microseconds)
  local up down total
  up=$(awk '{print $1}' "$work/$1" | median)
  down=$(awk '{print $2}' "$work/$1" | median)
  total=$(awk '{print $1 + $2}' "$work/$1" | median)
  echo "$up $down $total"
}

echo "roamlab fabric benchmark: $(nproc) cores, kernel $(uname -r), $runs alternating runs"
# Warm-up: page cache, binaries, /run/netns mount.
measure warm "$bin up --no-agents --name rlbench" "$bin down rlbench"
measure warm "$ipscript up ipbench" "$ipscript down ipbench"
for _ in $(seq 1 "$runs"); do
  measure roamlab "$bin up --no-agents --name rlbench" "$bin down rlbench"
  measure ip "$ipscript up ipbench" "$ipscript down ipbench"
done
read -r r_up r_down r_total < <(report roamlab)
read -r i_up i_down i_total < <(report ip)

peak_kb=$( { /usr/bin/time -f %M "$bin" up --no-agents --name rlbench >/dev/null; } 2>&1 | tail -1)
"$bin" down rlbench >/dev/null

for _ in $(seq 1 "$big_runs"); do
  measure roamlab_big "$bin up --no-agents --name rlbig -t $work/big.yaml" "$bin down rlbig"
  measure ip_big "big_ip up" "big_ip down"
done
read -r rb_up rb_down rb_total < <(report roamlab_big)
read -r ib_up ib_down ib_total < <(report ip_big)

printf '\n%-34s %10s %10s %10s\n' "default lab (5 nodes), medians" "up" "down" "up+down"
printf '%-34s %7s ms %7s ms %7s ms\n' "roamlab" "$(ms "$r_up")" "$(ms "$r_down")" "$(ms "$r_total")"
printf '%-34s %7s ms %7s ms %7s ms\n' "plain ip script" "$(ms "$i_up")" "$(ms "$i_down")" "$(ms "$i_total")"
printf '%-34s %9sx %9sx %9sx\n' "ratio roamlab / ip script" "$(ratio "$r_up" "$i_up")" "$(ratio "$r_down" "$i_down")" "$(ratio "$r_total" "$i_total")"
printf '\n%-34s %10s %10s %10s\n' "+$extra hosts on one bridge ($((extra + 5)) nodes)" "up" "down" "up+down"
printf '%-34s %7s ms %7s ms %7s ms\n' "roamlab" "$(ms "$rb_up")" "$(ms "$rb_down")" "$(ms "$rb_total")"
printf '%-34s %7s ms %7s ms %7s ms\n' "plain ip script" "$(ms "$ib_up")" "$(ms "$ib_down")" "$(ms "$ib_total")"
printf '%-34s %9sx %9sx %9sx\n' "ratio roamlab / ip script" "$(ratio "$rb_up" "$ib_up")" "$(ratio "$rb_down" "$ib_down")" "$(ratio "$rb_total" "$ib_total")"
per_node() { awk -v big="$1" -v small="$2" -v n="$extra" 'BEGIN {printf "%.2f", (big - small) / n / 1000}'; }
printf '%-34s %7s ms %7s ms\n' "roamlab cost per extra node" "$(per_node "$rb_up" "$r_up")" "$(per_node "$rb_down" "$r_down")"
printf '%-34s %7s ms %7s ms\n' "ip script cost per extra node" "$(per_node "$ib_up" "$i_up")" "$(per_node "$ib_down" "$i_down")"

echo
echo "targets:"
echo "  up+down ratio $(ratio "$r_total" "$i_total")x <= 0.25x: $(verdict "$(ratio "$r_total" "$i_total")" 0.25)"
echo "  up median $(ms "$r_up") ms <= 30 ms: $(verdict "$r_up" 30000)"
echo "  down median $(ms "$r_down") ms <= 20 ms: $(verdict "$r_down" 20000)"
echo "  peak memory of roamlab up $(awk -v k="$peak_kb" 'BEGIN {printf "%.1f", k/1024}') MB <= 30 MB: $(verdict "$peak_kb" 30720)"
