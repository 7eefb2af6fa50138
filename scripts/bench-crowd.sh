#!/usr/bin/env bash
# Crowd benchmark (issue 9): a baseline build and this tree's, side by side in one run.
#   - N terminals (SIZES, default "100 300 1000") attaching at once: the time until every
#     one is resolvable forward and reverse from fixed1 (each name asked, none sampled),
#     the memory of all agents (summed PSS, and the machine's MemAvailable drop per
#     terminal), and the cost per terminal at each N. This tree attaches with
#     `roamlab attach --all`; the baseline has no bulk verb, so it runs N `roamlab attach`
#     processes at once, as the issue measured it (BASE_SIZES, default "100 300").
#   - `roamlab up` of the default lab until every agent is ready, and one terminal's
#     attach-to-resolvable (`roamlab attach` until its name resolves from fixed1), p50 and
#     p99 over CYCLES (default 100) cycles each, the two builds alternating cycle by cycle.
#     `up` is timed twice: right after the last lab's `down` (the kernel still destroying
#     that lab's namespaces in its own workqueue, under the locks `up` needs), and on a
#     settled kernel (UP_SETTLE, default 0.2 s, after the `down`, outside the timing).
# Prints the figures, the ratios and whether each target is met. Needs root.
#   BASE=REV  the baseline commit (default 54e49a9, main before this work)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-54e49a9}
sizes=${SIZES:-100 300 1000}
base_sizes=${BASE_SIZES:-100 300}
cycles=${CYCLES:-100}
settle=${UP_SETTLE:-0.2}
[ "$(id -u)" -eq 0 ] || { echo "bench-crowd: needs root" >&2; exit 1; }
work=$(mktemp -d)
lab=crowdbench
cleanup() {
  for b in "${bins[@]:-}"; do [ -x "$b" ] && "$b" cleanup --lab $lab >/dev/null 2>&1; done
  "$(scripts/roamlab-bin)" cleanup --lab $lab >/dev/null 2>&1 || true
  for l in upbench attbase attcur; do "$(scripts/roamlab-bin)" cleanup --lab $l >/dev/null 2>&1 || true; done
  git worktree remove --force "$work/base" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add --detach "$work/base" "$base" >/dev/null 2>&1
echo "building the baseline ($base) and this tree ($(git rev-parse --short HEAD)) ..."
(cd "$work/base" && CARGO_TARGET_DIR="$work/target-base" cargo build --release -q)
cargo build --release -q
# The baseline's binary: target-base/release, or target-base/<host tuple>/release for a
# baseline that names its target (.cargo/config.toml).
base_bin() { ls "$work"/target-base/release/roamlab "$work"/target-base/*/release/roamlab 2>/dev/null | head -1; }
declare -A bins=([baseline]="$(base_bin)" [current]="$(scripts/roamlab-bin)")

us() { echo "${EPOCHREALTIME/./}"; }
secs() { awk -v u="$1" 'BEGIN {printf "%.2f", u/1e6}'; }
pct() { sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int((p/100)*(NR-1)+0.5)+1; printf "%.1f", a[i]/1000}'; }
avail_kb() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN {print (v <= t) ? "meets" : "MISSES"}'; }

# Every terminal's name forward and its address reverse, from fixed1 through the lab's
# resolver, in two dig batches side by side; prints how many of both were right (dig's own
# warnings, such as a late answer to a retried query, are left out so the lines stay in
# step with the terminals). The terminals and their addresses are what this tree's
# `attach --all --json` reported ($work/attach.out); the baseline has no such report, so
# they come from its `status`.
check_all() { # BIN WHICH
  local bin=$1
  if [ "$2" = current ]; then
    jq -r '.terminals[] | select(.ok) | "\(.terminal) \(.address)"' "$work/attach.out"
  else
    "$bin" status $lab --json | jq -r '.terminals[] | "\(.name) \(.address)"'
  fi | sort > "$work/addr"
  awk '{print $1 ".home.example A +short +tries=3 +time=2"}' "$work/addr" \
    | "$bin" exec --lab $lab fixed1 -- dig -f - | grep -v '^;;' > "$work/fwd" &
  awk '{print "-x " $2 " +short +tries=3 +time=2"}' "$work/addr" \
    | "$bin" exec --lab $lab fixed1 -- dig -f - | grep -v '^;;' > "$work/rev"
  wait
  paste -d' ' "$work/addr" "$work/fwd" "$work/rev" \
    | awk '$2 == $3 && $4 == $1 ".home.example." {ok++} END {print ok + 0}'
}

# Memory of all agents: summed PSS (each process's fair share), in MB.
agents_pss_mb() { # BIN
  "$1" status $lab --json | jq -r '.agents[].pid' | while read -r pid; do
    awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true
  done | awk '{s += $1} END {printf "%.0f", s/1024}'
}

crowd_run() { # WHICH N
  local which=$1 n=$2 bin=${bins[$1]}
  scripts/crowd-lab.sh "$n" $lab > "$work/crowd.yaml"
  "$bin" up -t "$work/crowd.yaml" >/dev/null
  sleep 1
  local avail0 t0 t1 t2 failed=0
  avail0=$(avail_kb)
  t0=$(us)
  if [ "$which" = current ]; then
    "$bin" attach --all --parallel 64 --json --lab $lab > "$work/attach.out" || failed=1
  else
    for i in $(seq 1 "$n"); do "$bin" attach "t$i" --lab $lab > "$work/a$i.out" 2>&1 & done
    for job in $(jobs -p); do wait "$job" || failed=$((failed + 1)); done
  fi
  t1=$(us)
  local ok; ok=$(check_all "$bin" "$which")
  t2=$(us)
  local pss drop_kb; pss=$(agents_pss_mb "$bin"); drop_kb=$(( avail0 - $(avail_kb) ))
  local d0 d1; d0=$(us)
  if [ "$which" = current ]; then
    "$bin" detach --all --lab $lab >/dev/null 2>&1 || true
  else
    for i in $(seq 1 "$n"); do "$bin" detach "t$i" --lab $lab >/dev/null 2>&1 & done
    wait
  fi
  d1=$(us)
  "$bin" down $lab >/dev/null
  local per; per=$(awk -v u=$((t2 - t0)) -v n="$n" 'BEGIN {printf "%.2f", u/1000/n}')
  printf '  %-8s %5d  %8s s %8s s %6s  %7s ms %9s MB %8s MB %8s s\n' "$which" "$n" \
    "$(secs $((t1 - t0)))" "$(secs $((t2 - t0)))" "$ok/$n" "$per" "$pss" \
    "$(awk -v k="$drop_kb" -v n="$n" 'BEGIN {printf "%.2f", k/1024/n}')" "$(secs $((d1 - d0)))"
  echo "$which $n $(( t2 - t0 )) $ok $per $drop_kb" >> "$work/crowd"
}

# The one-at-a-time figures alternate the two builds cycle by cycle: this machine's speed
# drifts by tens of percent from one minute to the next, which a run of one build's cycles
# then the other's would count as a difference between them. Each timed `up` follows a
# `down` of the same build's lab (an untimed up and down first): the kernel's teardown
# that it may wait for is that build's own.
up_cycles() { # FILE PAUSE: PAUSE seconds between the down and the timed up
  : > "$work/$1.baseline"; : > "$work/$1.current"
  for _ in $(seq 1 "$cycles"); do
    for which in baseline current; do
      local bin=${bins[$which]} t0 t1
      "$bin" up --name upbench >/dev/null
      "$bin" down upbench >/dev/null
      sleep "$2"
      t0=$(us)
      "$bin" up --name upbench >/dev/null
      t1=$(us)
      echo $((t1 - t0)) >> "$work/$1.$which"
      "$bin" down upbench >/dev/null
    done
  done
}

attach_cycles() {
  declare -A labs=([baseline]=attbase [current]=attcur)
  for which in baseline current; do
    scripts/crowd-lab.sh "$cycles" "${labs[$which]}" > "$work/one-$which.yaml"
    "${bins[$which]}" up -t "$work/one-$which.yaml" >/dev/null
    : > "$work/att.$which"
  done
  # A new terminal each cycle: one that comes back with another address waits out the
  # resolver's cache of its old one (its TTL), which is DNS, not us.
  for i in $(seq 1 "$cycles"); do
    for which in baseline current; do
      local bin=${bins[$which]} lab=${labs[$which]} t0 t1
      t0=$(us)
      "$bin" attach "t$i" --lab "$lab" > "$work/one.out"
      t1=$(us)
      grep -q "resolves to it from fixed1" "$work/one.out" || { echo "$which t$i: $(cat "$work/one.out")"; exit 1; }
      echo $((t1 - t0)) >> "$work/att.$which"
      "$bin" detach "t$i" --lab "$lab" >/dev/null
    done
  done
  for which in baseline current; do "${bins[$which]}" down "${labs[$which]}" >/dev/null; done
}

echo
echo "roamlab crowd benchmark: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo
echo "N terminals attaching at once (resolvable = attach + every name checked both ways):"
printf '  %-8s %5s  %10s %10s %6s  %10s %12s %11s %10s\n' build N attach resolvable right "per term." "agents PSS" "added/term" detach
: > "$work/crowd"
for n in $sizes; do
  for which in baseline current; do
    if [ "$which" = baseline ] && ! grep -qw "$n" <<< "$base_sizes"; then continue; fi
    crowd_run "$which" "$n"
  done
done

echo
echo "one at a time, $cycles cycles each:"
up_cycles up 0
up_cycles upq "$settle"
attach_cycles
printf '  %-44s %10s %10s %8s\n' "" baseline current ratio
for m in "up right after a down p50 (ms)|up|50" "up right after a down p99 (ms)|up|99" \
         "up on a settled kernel p50 (ms)|upq|50" "up on a settled kernel p99 (ms)|upq|99" \
         "attach-to-resolvable p50 (ms)|att|50" "attach-to-resolvable p99 (ms)|att|99"; do
  IFS='|' read -r label file p <<< "$m"
  b=$(pct "$work/$file.baseline" "$p"); c=$(pct "$work/$file.current" "$p")
  printf '  %-44s %10s %10s %8s\n' "$label" "$b" "$c" "$(awk -v b="$b" -v c="$c" 'BEGIN {printf "%.2fx", c/b}')"
done

echo
echo "targets (this machine):"
field() { awk -v w="$1" -v n="$2" -v f="$3" '$1 == w && $2 == n {print $f}' "$work/crowd"; }
smallest=$(echo $sizes | awk '{print $1}'); largest=$(echo $sizes | awk '{print $NF}')
t_large=$(awk -v u="$(field current "$largest" 3)" 'BEGIN {printf "%.2f", u/1e6}')
ok_large=$(field current "$largest" 4)
echo "  $largest terminals all resolvable in $t_large s <= 5 s ($ok_large/$largest right): $( [ "$ok_large" = "$largest" ] && verdict "$t_large" 5 || echo MISSES)"
mem_large=$(awk -v k="$(field current "$largest" 6)" -v n="$largest" 'BEGIN {printf "%.2f", k/1024/n}')
echo "  added memory per terminal at $largest: $mem_large MB <= 2 MB: $(verdict "$mem_large" 2)"
growth=$(awk -v a="$(field current "$largest" 5)" -v b="$(field current "$smallest" 5)" 'BEGIN {printf "%.2f", a/b}')
echo "  cost per terminal at $largest vs $smallest: ${growth}x (no faster than linear: <= 1.25x): $(verdict "$growth" 1.25)"
for n in $base_sizes; do
  b=$(field baseline "$n" 3); c=$(field current "$n" 3)
  [ -n "$b" ] && [ -n "$c" ] && echo "  $n at once, this tree vs baseline: $(awk -v b="$b" -v c="$c" 'BEGIN {printf "%.2fx faster", b/c}')"
done
up50=$(pct "$work/up.current" 50); upq50=$(pct "$work/upq.current" 50)
att50=$(pct "$work/att.current" 50)
echo "  up of the default lab p50, right after a down, $up50 ms <= 50 ms: $(verdict "$up50" 50)"
echo "  up of the default lab p50, settled kernel ($settle s after the down), $upq50 ms <= 50 ms: $(verdict "$upq50" 50)"
echo "  attach-to-resolvable p50 $att50 ms <= 10 ms: $(verdict "$att50" 10)"
