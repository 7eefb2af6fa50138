#!/usr/bin/env bash
# Move benchmark (issue 10, deliverable 4): a baseline build and this tree's, side by side
# in one run, each with the home zone's TTL at 10 s (the default) and at 0 (never cached).
# A lab with two visited networks (tests/labs/moves.yaml, with each build's default
# implicit-detach timer); phone1 moves between them MOVES times (default 20) while three
# probes (scripts/probe.py) run in the lab's fixed hosts:
#   - the home DNS asked back to back for phone1's name (fixed1, no recursion);
#   - the lab's resolver asked back to back (fixed2);
#   - ping by name: resolve through the resolver, then one echo (fixed1).
# Per move it reports the time the home DNS denied the name (NXDOMAIN or no address) and in
# how many moves it did, how long the home DNS held the old address after the move began,
# how long the resolver went on returning the old address after the home DNS held the new one, how long ping by name failed, and how long `roamlab attach
# --at` took to return. Then phone1's agent is killed (an abrupt loss) and it reports how
# long the name pointed at the dead address, at home and at the resolver.
# Prints the figures, the ratios and whether each target is met. Needs root.
#   BASE=REV  the baseline commit (default cf600b0, main before this work)
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-cf600b0}
moves=${MOVES:-20}
[ "$(id -u)" -eq 0 ] || { echo "bench-move: needs root" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench-move: needs python3 (Debian package python3)" >&2; exit 1; }
work=$(mktemp -d)
lab=movebench
declare -A bins=()
cleanup() {
  pkill -f "scripts/probe.py" 2>/dev/null || true
  for b in "${bins[@]:-}"; do [ -x "$b" ] && "$b" cleanup --lab $lab >/dev/null 2>&1; done
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
bins=([baseline]="$(base_bin)" [current]="$(scripts/roamlab-bin)")
probe="$PWD/scripts/probe.py"
us() { echo "${EPOCHREALTIME/./}"; }

# The moves lab as every build reads it: each build's own implicit-detach default, the
# home zone's TTL as asked, negative answers cached for the default 10 s, and no
# subscriber with a TTL of its own (phone2's; the baseline has no such field, and phone1,
# which moves, keeps its zone's).
topology() { # TTL
  sed -e 's/{ kind: vlr, implicit_detach_s: 2 }/{ kind: vlr }/' \
      -e '/^    ttl: [0-9]* *#/d' \
      -e "s/- { name: home.example, server: home, ttl: 0, negative_ttl: 2 }/- { name: home.example, server: home, ttl: $1, negative_ttl: 10 }/" \
      tests/labs/moves.yaml
}

run() { # WHICH TTL
  local which=$1 ttl=$2 bin=${bins[$1]} out="$work/$1-$2"
  mkdir -p "$out"
  topology "$ttl" > "$out/lab.yaml"
  "$bin" up -t "$out/lab.yaml" --name $lab >/dev/null
  "$bin" attach phone1 --at visited --lab $lab >/dev/null
  "$bin" exec --lab $lab fixed1 -- python3 "$probe" dns 192.0.2.53 phone1.home.example > "$out/home" &
  "$bin" exec --lab $lab fixed2 -- python3 "$probe" dns 203.0.113.53 phone1.home.example rd > "$out/resolver" &
  "$bin" exec --lab $lab fixed1 -- python3 "$probe" ping 203.0.113.53 phone1.home.example > "$out/ping" &
  sleep 1
  local at=visited to
  : > "$out/moves"
  for _ in $(seq 1 "$moves"); do
    to=$([ $at = visited ] && echo visited2 || echo visited)
    local t0 t1 address
    t0=$(us)
    "$bin" attach phone1 --at $to --lab $lab > "$out/attach.out" 2>&1 || { cat "$out/attach.out"; exit 1; }
    t1=$(us)
    address=$(sed -n 's/.* has address \([0-9.]*\);.*/\1/p' "$out/attach.out")
    echo "$t0 $t1 $address" >> "$out/moves"
    # The next move starts once the resolver returns the new address (15 s at most).
    for _ in $(seq 1 300); do
      tail -1 "$out/resolver" | grep -q " $address\$" && break
      sleep 0.05
    done
    sleep 0.5
    at=$to
  done
  # An abrupt loss: the terminal's agent killed, no detach.
  local pid
  pid=$("$bin" status $lab --json | jq -r '.agents[] | select(.name == "terminal") | .pid')
  echo "$(us)" > "$out/killed"
  kill -9 "$pid"
  for _ in $(seq 1 900); do
    tail -1 "$out/home" | grep -q NXDOMAIN && tail -1 "$out/resolver" | grep -q NXDOMAIN && break
    sleep 0.05
  done
  sleep 0.2
  pkill -f "scripts/probe.py" || true
  wait 2>/dev/null || true
  "$bin" down $lab >/dev/null
  echo "$which ttl=$ttl done"
}

for ttl in 10 0; do
  for which in baseline current; do run $which $ttl; done
done

python3 - "$work" "$moves" <<'EOF'
import statistics, sys
work, moves = sys.argv[1], int(sys.argv[2])

def log(path):
    rows = []
    for line in open(path):
        t, _, what = line.strip().partition(" ")
        rows.append((int(t), what))
    return rows

def spans(rows, bad, start, end):
    """Total µs within [start, end) that the probe's state satisfied bad()."""
    total = 0
    for i, (t, what) in enumerate(rows):
        t_next = rows[i + 1][0] if i + 1 < len(rows) else end
        a, b = max(t, start), min(t_next, end)
        if b > a and bad(what):
            total += b - a
    return total

def first(rows, good, after):
    state = None
    for t, what in rows:
        if t <= after:
            state = (t, what)
            continue
        if good(what):
            return t
    if state and good(state[1]):
        return after
    return None

denied = lambda w: w in ("NXDOMAIN", "NODATA") or w.startswith("RCODE")
results = {}
for ttl in (10, 0):
    for which in ("baseline", "current"):
        d = f"{work}/{which}-{ttl}"
        home, res, ping = log(f"{d}/home"), log(f"{d}/resolver"), log(f"{d}/ping")
        mv = [tuple(l.split()) for l in open(f"{d}/moves")]
        killed = int(open(f"{d}/killed").read())
        row = {"home_denied": [], "home_old": [], "stale": [], "ping_fail": [], "attach": [],
               "denied_moves": 0}
        for i, (t0, t1, address) in enumerate(mv):
            t0, t1 = int(t0), int(t1)
            end = int(mv[i + 1][0]) if i + 1 < len(mv) else killed
            gap = spans(home, denied, t0, end)
            row["home_denied"].append(gap / 1000)
            row["denied_moves"] += gap > 0
            home_new = first(home, lambda w: w == address, t0)
            res_new = first(res, lambda w: w == address, t0)
            if home_new is not None:
                row["home_old"].append((home_new - t0) / 1000)
            if home_new is not None and res_new is not None:
                row["stale"].append(max(res_new - home_new, 0) / 1000)
            row["ping_fail"].append(spans(ping, lambda w: w.startswith("fail"), t0, end) / 1000)
            row["attach"].append((t1 - t0) / 1000)
        h = first(home, lambda w: w == "NXDOMAIN", killed)
        r = first(res, lambda w: w == "NXDOMAIN", killed)
        row["loss_home"] = (h - killed) / 1e6 if h else float("nan")
        row["loss_resolver"] = (r - killed) / 1e6 if r else float("nan")
        results[(which, ttl)] = row

def p(v, q):
    v = sorted(v)
    return v[min(int(q / 100 * (len(v) - 1) + 0.5), len(v) - 1)] if v else float("nan")

print()
print(f"moves between two visited networks, {moves} per row; ms unless said (p50 / max)")
print(f"{'build':9} {'TTL':>3}  {'home denied':>16} {'in moves':>8}  {'old at home':>16}  {'old at resolver':>16}  "
      f"{'ping by name fails':>18}  {'attach --at':>14}  {'lost: dead at home / resolver':>29}")
for ttl in (10, 0):
    for which in ("baseline", "current"):
        r = results[(which, ttl)]
        f = lambda k: f"{p(r[k], 50):7.1f} /{max(r[k]) if r[k] else float('nan'):7.1f}"
        print(f"{which:9} {ttl:>3}  {f('home_denied'):>16} {r['denied_moves']:>4}/{moves:<3}  {f('home_old'):>16}  "
              f"{f('stale'):>16}  {f('ping_fail'):>18}  {f('attach'):>14}  "
              f"{r['loss_home']:12.1f} s / {r['loss_resolver']:5.1f} s")
b, c = results[("baseline", 10)], results[("current", 0)]
print()
print("targets (current with TTL 0 against the baseline with the default TTL):")
def verdict(ok): return "meets" if ok else "MISSES"
never = max(c["home_denied"]) == 0 and all(max(results[("current", t)]["home_denied"]) == 0 for t in (10, 0))
print(f"  the home DNS never denies a registered terminal's name during a move: "
      f"{c['denied_moves']}/{moves} moves denied (baseline {b['denied_moves']}/{moves}): {verdict(never)}")
print(f"  with TTL 0 the next lookup returns the new address: old address at the resolver "
      f"max {max(c['stale']):.1f} ms (baseline p50 {p(b['stale'], 50):.1f} ms): {verdict(max(c['stale']) < 50)}")
ratio = p(b['attach'], 50) / p(c['attach'], 50)
print(f"  a move completes well under a second: attach --at p50 {p(c['attach'], 50):.1f} ms, "
      f"max {max(c['attach']):.1f} ms (baseline p50 {p(b['attach'], 50):.1f} ms, {ratio:.0f}x): "
      f"{verdict(max(c['attach']) < 500)}")
print(f"  ping by name fails during a move: p50 {p(c['ping_fail'], 50):.1f} ms, max {max(c['ping_fail']):.1f} ms "
      f"(baseline p50 {p(b['ping_fail'], 50):.1f} ms)")
cd = results[("current", 10)]
print(f"  an abrupt loss clears the name well under 30 s: {cd['loss_home']:.1f} s at home, "
      f"{cd['loss_resolver']:.1f} s at the resolver with the default timer "
      f"(baseline {b['loss_home']:.1f} s / {b['loss_resolver']:.1f} s): {verdict(cd['loss_home'] < 15)}")
EOF
