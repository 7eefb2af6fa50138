#!/usr/bin/env bash
# DHCP + dynamic DNS throughput (issue 9), roamlab and Kea side by side in one run.
#
# N terminals (default 1000) are subscribers of the crowd lab (scripts/crowd-lab.sh with
# RELAY=1). Kea's perfdhcp runs in the lab's `relay` node as a DHCP relay (giaddr
# 198.18.0.10) with a MAC list (-M) of exactly those terminals, at each rate of RATES
# (exchanges started per second, for PERIOD seconds, the same seed for both servers):
#   - roamlab: the terminals are registered through the real VLR and HLR first
#     (`roamlab attach --all --dhcp-client none`: Milenage, UpdateLocation, no address);
#     the visited DHCP server leases to them through the relay, the HLR writes each A
#     record at the home DNS, the DHCP server each PTR at the visited DNS.
#   - Kea 2.2 (kea-dhcp4) + Kea DHCP-DDNS (kea-dhcp-ddns) + BIND 9.18 (named), Debian's
#     packages, run with `roamlab exec` in the same lab built without roamlab's DNS, VLR
#     and DHCP: Kea in the visited node, named for home.example in the home node and for
#     the reverse zones in the visited node, TSIG-signed updates from D2 to both.
# For each rate it prints the exchanges acknowledged (ACKs / DISCOVERs sent), the leases
# the server holds (perfdhcp picks a MAC of the list at random per exchange, so a MAC may
# come back and renew; leases are the distinct ones), and how many of them have both
# their A and their PTR record at the authorities (every lease asked, none sampled;
# counted until all are there or the count stops growing for SETTLE seconds); "all in" is
# the time from the first exchange to that count, records/s the leases named both ways
# per second of it. A rate is sustained when >= 99 % of exchanges are acknowledged and
# 100 % of the leases have both records; the script prints each server's highest
# sustained rate, their ratio and whether the targets (>= 2,000 leases/s, >= 2x Kea) are
# met. Needs root and the Debian packages kea-admin, kea-dhcp4-server,
# kea-dhcp-ddns-server and bind9.
#   N=1000 RATES="500 1000 2000 4000" PERIOD=2 SETTLE=5 SERVERS="roamlab kea"
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-1000}
rates=${RATES:-500 1000 1500 2000 3000 4000}
period=${PERIOD:-2}
settle=${SETTLE:-5}
servers=${SERVERS:-roamlab kea}
seed=${SEED:-7}
[ "$(id -u)" -eq 0 ] || { echo "bench-dhcp: needs root" >&2; exit 1; }
for tool in perfdhcp kea-dhcp4 kea-dhcp-ddns named; do
  command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || {
    echo "bench-dhcp: $tool is missing: apt-get install kea-admin kea-dhcp4-server kea-dhcp-ddns-server bind9" >&2
    exit 1
  }
done
export PATH="/usr/sbin:$PATH"
cargo build --release -q
bin="$(scripts/roamlab-bin)"
lab=dhcpbench
work=$(mktemp -d /tmp/bench-dhcp.XXXXXX)
kea_pids=()
cleanup() {
  [ ${#kea_pids[@]} -eq 0 ] || kill "${kea_pids[@]}" 2>/dev/null || true
  "$bin" cleanup --lab $lab >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

RELAY=1 scripts/crowd-lab.sh "$n" $lab > "$work/lab.yaml"
# Kea's lab: the same nodes and links, without roamlab's DNS, VLR and DHCP services.
awk '/^      - kind: (dns|vlr|dhcp|hlr)$/ {skip=1; next}
     /^      - \{ kind: dns/ {next}
     skip && /^        / {next}
     {skip=0; print}' "$work/lab.yaml" \
  | sed -e 's/^    services:$/    services: []/' -e '/^    partners:/d' > "$work/kea-lab.yaml"

reverse_zones=$(for c in $(seq 16 31); do echo "$c.18.198.in-addr.arpa"; done)

# perfdhcp at RATE from the relay node; prints "sent acked" (DISCOVERs sent, ACKs received)
# and sets load_started (when it began).
load() { # RATE MACS
  load_started=$EPOCHREALTIME
  "$bin" exec --lab $lab relay -- perfdhcp -4 -l 198.18.0.10 -M "$2" -r "$1" -p "$period" \
    -s "$seed" -W 500000 198.18.0.9 > "$work/perfdhcp.out" 2>&1 || true
  awk '/Statistics for: DISCOVER-OFFER/ {s=1} /Statistics for: REQUEST-ACK/ {s=2}
       /^sent packets:/ && s==1 {sent=$3} /^received packets:/ && s==2 {acked=$3}
       END {print sent + 0, acked + 0}' "$work/perfdhcp.out"
}

# How many of the leases in $work/leases ("name address" lines) have their A record at
# 192.0.2.53 and their PTR record at 198.18.8.53, asked from fixed1.
records_right() {
  awk '{print $1 " A +short +norecurse +tries=2 +time=1 @192.0.2.53"}' "$work/leases" \
    | "$bin" exec --lab $lab fixed1 -- dig -f - > "$work/fwd" 2>/dev/null || true
  awk '{print "-x " $2 " +short +norecurse +tries=2 +time=1 @198.18.8.53"}' "$work/leases" \
    | "$bin" exec --lab $lab fixed1 -- dig -f - > "$work/rev" 2>/dev/null || true
  paste -d' ' "$work/leases" "$work/fwd" "$work/rev" \
    | awk '$2 == $3 && $4 == $1 "." {ok++} END {print ok + 0}'
}

# Counts records until the count stops growing for SETTLE seconds; prints "right seconds",
# the seconds from the load's start until the last count.
settled_count() {
  local best=-1 still=0 t0=$load_started right
  while :; do
    right=$(records_right)
    if [ "$right" -gt "$best" ]; then best=$right; still=0; else still=$((still + 1)); fi
    local total
    total=$(wc -l < "$work/leases")
    if [ "$best" -ge "$total" ] || [ "$still" -ge "$settle" ]; then break; fi
    sleep 1
  done
  echo "$best $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')"
}

roamlab_leases() { # the lease book: bound leases as "name address"
  jq -rs 'reduce .[] as $l ({}; if $l.v then .[$l.k] = $l.v else del(.[$l.k]) end)
          | to_entries[] | select(.value.offered | not) | "\(.value.host_name) \(.key)"' \
    "/run/roamlab/$lab/dhcp-visited/leases.jsonl" | sort > "$work/leases"
}

run_roamlab() { # RATE; prints "sent acked leases right settle"
  "$bin" up -t "$work/lab.yaml" > /dev/null
  local t0=$EPOCHREALTIME
  "$bin" attach --lab $lab --all --dhcp-client none > "$work/attach.out" 2>&1 \
    || { cat "$work/attach.out" >&2; return 1; }
  jq -r 'select(.v) | .v.mac' "/run/roamlab/$lab/vlr-visited/published/attached.jsonl" \
    | sort -u > "$work/macs"
  echo "attach $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s" >&2
  [ "$(wc -l < "$work/macs")" -eq "$n" ] || { echo "bench-dhcp: $(wc -l < "$work/macs") of $n registered" >&2; return 1; }
  local sa
  load "$1" "$work/macs" > "$work/sa"
  sa=$(cat "$work/sa")
  roamlab_leases
  echo "$sa $(wc -l < "$work/leases") $(settled_count)"
  "$bin" down $lab > /dev/null
}

# Kea's configuration: kea-dhcp4 answering relay 198.18.0.10 for 198.18.16.0/20 and naming
# each lease kea-<address>.home.example; D2 sending TSIG-signed updates to named at home
# (home.example) and in the visited network (18.198.in-addr.arpa).
write_kea_configs() {
  local k=$work/kea secret
  rm -rf "$k"; mkdir -p "$k/home" "$k/visited"
  secret=$(head -c 32 /dev/urandom | base64)
  cat > "$k/dhcp4.json" <<JSON
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["eth-relay/198.18.0.9"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "$k/leases4.csv", "lfc-interval": 0},
  "valid-lifetime": 600, "renew-timer": 300, "rebind-timer": 525,
  "multi-threading": {"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64},
  "dhcp-ddns": {"enable-updates": true, "server-ip": "127.0.0.1", "server-port": 53001,
                "max-queue-size": 1024, "ncr-protocol": "UDP", "ncr-format": "JSON"},
  "ddns-send-updates": true, "ddns-override-no-update": true, "ddns-override-client-update": true,
  "ddns-replace-client-name": "always", "ddns-generated-prefix": "kea",
  "ddns-qualifying-suffix": "home.example.",
  "subnet4": [{"id": 1, "subnet": "198.18.16.0/20",
               "pools": [{"pool": "198.18.16.10 - 198.18.31.250"}],
               "relay": {"ip-addresses": ["198.18.0.10"]},
               "option-data": [{"name": "routers", "data": "198.18.16.1"}]}],
  "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
               "output_options": [{"output": "$k/dhcp4.log"}]}]
}}
JSON
  cat > "$k/d2.json" <<JSON
{"DhcpDdns": {
  "ip-address": "127.0.0.1", "port": 53001, "dns-server-timeout": 1000,
  "tsig-keys": [{"name": "kea", "algorithm": "HMAC-SHA256", "secret": "$secret"}],
  "forward-ddns": {"ddns-domains": [{"name": "home.example.", "key-name": "kea",
                                     "dns-servers": [{"ip-address": "192.0.2.53"}]}]},
  "reverse-ddns": {"ddns-domains": [{"name": "18.198.in-addr.arpa.", "key-name": "kea",
                                     "dns-servers": [{"ip-address": "198.18.8.53"}]}]},
  "loggers": [{"name": "kea-dhcp-ddns", "severity": "WARN",
               "output_options": [{"output": "$k/d2.log"}]}]
}}
JSON
  named_conf home 192.0.2.53 home.example "$secret"
  named_conf visited 198.18.8.53 18.198.in-addr.arpa "$secret"
}

named_conf() { # NODE ADDRESS ZONE SECRET
  local d=$work/kea/$1
  cat > "$d/named.conf" <<CONF
options { directory "$d"; pid-file "$d/named.pid"; listen-on { $2; }; listen-on-v6 { none; };
          recursion no; dnssec-validation no; notify no; allow-transfer { none; }; };
key "kea" { algorithm hmac-sha256; secret "$4"; };
zone "$3" { type primary; file "$d/zone.db"; allow-update { key "kea"; }; };
CONF
  printf '$TTL 60\n@ SOA ns hostmaster 1 3600 600 86400 60\n@ NS ns\nns A %s\n' "$2" > "$d/zone.db"
}

kea_leases() { # bound leases in Kea's lease file as "name address" (its last line per address)
  awk -F, 'NR > 1 {state[$1] = $10; name[$1] = $9}
           END {for (a in state) if (state[a] == 0 && name[a] != "") {sub(/\.$/, "", name[a]); print name[a], a}}' \
    "$work/kea/leases4.csv" | sort > "$work/leases"
}

run_kea() { # RATE; prints "sent acked leases right settle"
  "$bin" up -t "$work/kea-lab.yaml" --name $lab > /dev/null
  write_kea_configs
  local -n pids=kea_pids
  "$bin" exec --lab $lab home -- named -g -c "$work/kea/home/named.conf" > "$work/kea/home/out" 2>&1 & pids+=($!)
  "$bin" exec --lab $lab visited -- named -g -c "$work/kea/visited/named.conf" > "$work/kea/visited/out" 2>&1 & pids+=($!)
  "$bin" exec --lab $lab visited -- env KEA_PIDFILE_DIR="$work/kea" KEA_LOCKFILE_DIR="$work/kea" kea-dhcp-ddns -c "$work/kea/d2.json" > "$work/kea/d2.out" 2>&1 & pids+=($!)
  "$bin" exec --lab $lab visited -- env KEA_PIDFILE_DIR="$work/kea" KEA_LOCKFILE_DIR="$work/kea" kea-dhcp4 -c "$work/kea/dhcp4.json" > "$work/kea/dhcp4.out" 2>&1 & pids+=($!)
  # Ready when both servers answer and Kea has opened its socket.
  local i
  for i in $(seq 100); do
    "$bin" exec --lab $lab fixed1 -- dig +short +norecurse +time=1 +tries=1 SOA home.example @192.0.2.53 2>/dev/null | grep -q hostmaster \
      && "$bin" exec --lab $lab fixed1 -- dig +short +norecurse +time=1 +tries=1 SOA 18.198.in-addr.arpa @198.18.8.53 2>/dev/null | grep -q hostmaster \
      && grep -q "DHCP4_STARTED\|started" "$work/kea/dhcp4.out" "$work/kea/dhcp4.log" 2>/dev/null && break
    sleep 0.1
  done
  local sa
  load "$1" "$work/macs" > "$work/sa"
  sa=$(cat "$work/sa")
  kea_leases
  echo "$sa $(wc -l < "$work/leases") $(settled_count)"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  "$bin" down $lab > /dev/null
}

[ "${BENCH_DHCP_LIBRARY:-0}" = 1 ] && return 0

# The MAC list: the registered terminals' (from roamlab's first run), else N made up.
declare -A result
for server in $servers; do
  for r in $rates; do
    if [ "$server" = kea ] && [ ! -s "$work/macs" ]; then
      for i in $(seq 1 "$n"); do printf '02:6b:%02x:%02x:%02x:%02x\n' $((i >> 24 & 255)) $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255)); done > "$work/macs"
    fi
    echo "bench-dhcp: $server at $r exchanges/s for ${period} s ..." >&2
    result[$server,$r]=$(run_$server "$r")
  done
done

sustained() { # SERVER: the highest rate with >= 99 % acknowledged and every record
  local best=0 r
  for r in $rates; do
    read -r sent acked leases right _ <<< "${result[$1,$r]}"
    if awk -v s="$sent" -v a="$acked" 'BEGIN {exit !(s > 0 && a / s >= 0.99)}' \
      && [ "$leases" -gt 0 ] && [ "$right" -eq "$leases" ]; then best=$r; fi
  done
  echo "$best"
}

echo
echo "DHCP + dynamic DNS through a relay, $n registered terminals, perfdhcp -M (seed $seed), ${period} s per rate"
printf '%-8s %12s %8s %9s %8s %14s %9s %10s\n' server "exchanges/s" "sent" "acked" "leases" "A+PTR right" "all in" "records/s"
for server in $servers; do
  for r in $rates; do
    read -r sent acked leases right settle <<< "${result[$server,$r]}"
    printf '%-8s %12s %8s %8.1f%% %8s %8s %4.0f%% %8ss %10.0f\n' "$server" "$r" "$sent" \
      "$(awk -v s="$sent" -v a="$acked" 'BEGIN {print s ? 100 * a / s : 0}')" "$leases" "$right" \
      "$(awk -v l="$leases" -v g="$right" 'BEGIN {print l ? 100 * g / l : 0}')" "$settle" \
      "$(awk -v g="$right" -v t="$settle" 'BEGIN {print (t > 0 ? g / t : 0)}')"
  done
done
echo
for server in $servers; do echo "$server: highest sustained rate $(sustained "$server") exchanges/s"; done
if [[ " $servers " == *" roamlab "* && " $servers " == *" kea "* ]]; then
  ours=$(sustained roamlab) theirs=$(sustained kea)
  ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {print b ? sprintf("%.2f", a / b) : "inf"}')
  echo "ratio roamlab / Kea + D2 + BIND: ${ratio}x"
  awk -v a="$ours" 'BEGIN {print "target >= 2,000/s with every record: " (a >= 2000 ? "meets" : "MISSES")}'
  awk -v r="$ratio" 'BEGIN {print "target >= 2x Kea + D2 + BIND: " (r == "inf" || r >= 2 ? "meets" : "MISSES")}'
fi
