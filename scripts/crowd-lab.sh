#!/usr/bin/env bash
# Writes a topology like the default lab, named NAME, whose visited cell has room for COUNT
# roaming terminals t1 … tCOUNT (subscribers of home, keys derived from their number):
#   scripts/crowd-lab.sh COUNT [NAME] > lab.yaml
# The cell is 198.18.8.0/21 (benchmark range), its pool 198.18.8.100-198.18.12.254 (1,179 addresses); at most 1,000 terminals.
# With RELAY=1 a host node `relay` (198.18.0.10) is linked to the visited network and is its
# DHCP server's relay for 198.18.16.0/20 (pool 198.18.16.10-198.18.31.250): a load
# generator such as perfdhcp runs there (`roamlab exec relay -- perfdhcp -l 198.18.0.10 …`).
set -euo pipefail
count=${1:?usage: crowd-lab.sh COUNT [NAME]}
name=${2:-crowd}
[ "$count" -ge 1 ] && [ "$count" -le 1000 ] || { echo "crowd-lab: COUNT must be 1 to 1000" >&2; exit 1; }
cat <<YAML
# A crowd of $count roaming terminals (written by scripts/crowd-lab.sh).
name: $name
nodes:
  core:
    role: core
    bridges:
      hosts:
        addresses: [203.0.113.1/24, 203.0.113.53/24, 203.0.113.54/24]
    services:
      - { kind: dns, address: 203.0.113.54, resolver: 203.0.113.53 }
  home:
    role: home
    domain: home.example
    plmn: "00101"
    bridges:
      lan:
        addresses: [192.0.2.1/24, 192.0.2.53/24]
    services:
      - kind: dns
      - kind: hlr
  visited:
    role: visited
    domain: visited.example
    partners: [home]
    bridges:
      cell:
        addresses: [198.18.8.1/21, 198.18.8.53/21]
        pool: { start: 198.18.8.100, end: 198.18.12.254 }
    services:
      - kind: dns
      - kind: vlr
YAML
if [ "${RELAY:-0}" = 1 ]; then
cat <<YAML
      - kind: dhcp
        relays:
          - { address: 198.18.0.10, subnet: 198.18.16.0/20, pool: { start: 198.18.16.10, end: 198.18.31.250 } }
  relay: {}
YAML
else
cat <<YAML
      - kind: dhcp
YAML
fi
cat <<YAML
  fixed1: {}
links:
  - endpoints:
      - { node: core, addresses: [198.18.0.1/30] }
      - { node: home, addresses: [198.18.0.2/30] }
  - endpoints:
      - { node: core, addresses: [198.18.0.5/30] }
      - { node: visited, addresses: [198.18.0.6/30] }
  - endpoints:
      - { node: fixed1, interface: eth0, addresses: [203.0.113.10/24] }
      - { node: core, bridge: hosts }
YAML
if [ "${RELAY:-0}" = 1 ]; then
cat <<YAML
  - endpoints:
      - { node: visited, addresses: [198.18.0.9/30] }
      - { node: relay, interface: eth0, addresses: [198.18.0.10/30] }
YAML
fi
cat <<YAML
subscribers:
YAML
for i in $(seq 1 "$count"); do
  printf '  t%d:\n    imsi: "00101%010d"\n    hostname: t%d.home.example\n    home: home\n' "$i" $((100000 + i)) "$i"
  printf '    k: %032x\n    opc: cd63cb71954a9f4e48a5994e37a02baf\n' $((0x5eed0000 + i))
done
