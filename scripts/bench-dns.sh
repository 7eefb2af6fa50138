#!/usr/bin/env bash
# DNS benchmark: roamlab's DNS agent (hickory-server) against BIND 9 (`named`) serving the
# same home.example zone in the same node (ours on 192.0.2.53, named on 192.0.2.1), driven
# by dnsperf from fixed1, side by side in one run:
#   - queries per second for SECS seconds (default 10) against each;
#   - TSIG-signed (hmac-sha256) dynamic updates per second against each: one pass through
#     20000 updates that each add a new name (capped at SECS seconds).
# Prints the figures and the ratios against BIND and the targets. Needs root.
#   SECS=10 scripts/bench-dns.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
[ "$(id -u)" -eq 0 ] || { echo "bench-dns: needs root" >&2; exit 1; }
for p in dnsperf bind9; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="${need:-} $p"
done
if [ -n "${need:-}" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  # The package may start a named on the host; the benchmark runs its own inside the lab.
  command -v systemctl >/dev/null && systemctl disable --now named >/dev/null 2>&1 || true
fi
cargo build --release -q
bin=$(scripts/roamlab-bin)
lab=dnsbench
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  [ -f "$work/named.pid" ] && kill "$(cat "$work/named.pid")" 2>/dev/null || true
  "$bin" down $lab >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The default lab, with 200 static records in home.example for the query mix.
{
  sed -n '/^subscribers:/q;p' topologies/roaming.yaml | sed "s/^name: roam$/name: $lab/"
  echo "zones:"
  echo "  - name: home.example"
  echo "    server: home"
  echo "    records:"
  for i in $(seq 1 200); do echo "      - \"host$i 300 A 192.0.2.$((i % 200 + 10))\""; done
} > "$work/lab.yaml"
"$bin" up -t "$work/lab.yaml" >/dev/null

# BIND serves the very zone file roamlab generated, with the same TSIG key.
cp "/run/roamlab/$lab/dns-home/home.example.zone" "$work/home.example.zone"
cat > "$work/named.conf" <<CONF
include "/run/roamlab/$lab/keys/home.conf";
options {
  directory "$work";
  pid-file "$work/named.pid";
  listen-on port 53 { 192.0.2.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
};
zone "home.example" { type primary; file "$work/home.example.zone"; allow-update { key "roamlab-home"; }; };
CONF
# --privileged: named reads the lab's key, and its pid file must name a pid of ours.
"$bin" exec --privileged --lab $lab home -- named -c "$work/named.conf" -n 2 >/dev/null 2>&1
for _ in $(seq 1 50); do
  "$bin" exec --lab $lab fixed1 -- dig +short +time=1 +tries=1 @192.0.2.1 home.example SOA | grep -q hostmaster && break
  sleep 0.1
done

for i in $(seq 1 200); do echo "host$i.home.example A"; done > "$work/queries"
echo "home.example SOA" >> "$work/queries"
echo "missing.home.example A" >> "$work/queries"
updates() { # FILE PREFIX: one signed update per block, each adding a new name
  for i in $(seq 1 20000); do
    printf 'home.example\nadd %s%d 10 A 198.51.100.%d\nsend\n' "$2" "$i" $((i % 100 + 100))
  done > "$1"
}
updates "$work/updates-roamlab" r
updates "$work/updates-bind" b
key="hmac-sha256:roamlab-home:$(base64 -w0 "/run/roamlab/$lab/keys/home.key")"

perf() { # SERVER FILE [extra dnsperf args] -> prints the per-second rate
  "$bin" exec --lab $lab fixed1 -- dnsperf -s "$1" -d "$2" -l "$secs" -c 4 -q 100 "${@:3}" 2>&1 |
    awk '/(Queries|Updates) per second:/ {print $4}' | head -1
}

echo "roamlab DNS benchmark: $(nproc) cores, ${secs}s per run, dnsperf from fixed1, servers in home"
q_ours=$(perf 192.0.2.53 "$work/queries")
q_bind=$(perf 192.0.2.1 "$work/queries")
# One pass through 20000 updates that each add a new name (a second pass would only
# re-add existing records, which changes nothing).
u_ours=$(perf 192.0.2.53 "$work/updates-roamlab" -u -y "$key" -n 1)
u_bind=$(perf 192.0.2.1 "$work/updates-bind" -u -y "$key" -n 1)
# Each server must still answer, and hold what it was sent.
check_ours=$("$bin" exec --lab $lab fixed1 -- dig +short @192.0.2.53 r1.home.example)
check_bind=$("$bin" exec --lab $lab fixed1 -- dig +short @192.0.2.1 b1.home.example)
serial_ours=$("$bin" exec --lab $lab fixed1 -- dig +short @192.0.2.53 home.example SOA | awk '{print $3}')
serial_bind=$("$bin" exec --lab $lab fixed1 -- dig +short @192.0.2.1 home.example SOA | awk '{print $3}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '\n%-30s %14s %14s %8s\n' "" "roamlab" "BIND 9" "ratio"
printf '%-30s %14.0f %14.0f %7sx\n' "queries per second" "$q_ours" "$q_bind" "$(ratio "$q_ours" "$q_bind")"
printf '%-30s %14.0f %14.0f %7sx\n' "TSIG-signed updates per second" "$u_ours" "$u_bind" "$(ratio "$u_ours" "$u_bind")"
echo "afterwards: first updated name answers roamlab ${check_ours:-MISSING}, BIND ${check_bind:-MISSING}; SOA serial roamlab $serial_ours, BIND $serial_bind"
echo
echo "targets:"
echo "  queries/s ratio $(ratio "$q_ours" "$q_bind")x >= 0.5x: $(awk -v r="$(ratio "$q_ours" "$q_bind")" 'BEGIN {print (r >= 0.5) ? "meets" : "MISSES"}')"
echo "  signed updates/s $(printf '%.0f' "$u_ours") >= 1000: $(awk -v u="$u_ours" 'BEGIN {print (u >= 1000) ? "meets" : "MISSES"}')"
