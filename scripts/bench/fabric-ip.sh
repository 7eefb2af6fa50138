#!/usr/bin/env bash
# The default roamlab lab's fabric built by hand with `ip`, the way most people script a
# namespace lab: same namespaces, veths, bridges, addresses, routes and sysctls.
# Usage: fabric-ip.sh up|down [LAB]   (the benchmark's baseline; not used by roamlab)
set -euo pipefail
lab=${2:-ipbench}
core=$lab-core home=$lab-home visited=$lab-visited f1=$lab-fixed1 f2=$lab-fixed2

up() {
  for ns in $core $f1 $f2 $home $visited; do
    ip netns add $ns
    ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n $ns link set lo up
  done
  for ns in $core $home $visited; do ip netns exec $ns sysctl -qw net.ipv4.ip_forward=1; done

  ip -n $core link add hosts type bridge && ip -n $core link set hosts up
  ip -n $home link add lan type bridge && ip -n $home link set lan up
  ip -n $visited link add cell type bridge && ip -n $visited link set cell up

  ip -n $core link add eth-home type veth peer name eth-core netns $home
  ip -n $core link add eth-visited type veth peer name eth-core netns $visited
  ip -n $core link add hosts-fixed1 type veth peer name eth0 netns $f1
  ip -n $core link add hosts-fixed2 type veth peer name eth0 netns $f2
  ip -n $core link set hosts-fixed1 master hosts
  ip -n $core link set hosts-fixed2 master hosts
  for dev in eth-home eth-visited hosts-fixed1 hosts-fixed2; do ip -n $core link set $dev up; done
  ip -n $home link set eth-core up
  ip -n $visited link set eth-core up
  ip -n $f1 link set eth0 up
  ip -n $f2 link set eth0 up

  ip -n $core addr add 203.0.113.1/24 dev hosts
  ip -n $home addr add 192.0.2.1/24 dev lan
  ip -n $home addr add 192.0.2.53/24 dev lan
  ip -n $visited addr add 198.51.100.1/24 dev cell
  ip -n $visited addr add 198.51.100.53/24 dev cell
  ip -n $core addr add 198.18.0.1/30 dev eth-home
  ip -n $home addr add 198.18.0.2/30 dev eth-core
  ip -n $core addr add 198.18.0.5/30 dev eth-visited
  ip -n $visited addr add 198.18.0.6/30 dev eth-core
  ip -n $f1 addr add 203.0.113.10/24 dev eth0
  ip -n $f2 addr add 203.0.113.20/24 dev eth0

  ip -n $core route add 192.0.2.0/24 via 198.18.0.2 dev eth-home
  ip -n $core route add 198.51.100.0/24 via 198.18.0.6 dev eth-visited
  for ns in $f1 $f2; do
    for net in 192.0.2.0/24 198.18.0.0/30 198.18.0.4/30 198.51.100.0/24; do
      ip -n $ns route add $net via 203.0.113.1 dev eth0
    done
  done
  for net in 198.18.0.4/30 198.51.100.0/24 203.0.113.0/24; do ip -n $home route add $net via 198.18.0.1 dev eth-core; done
  for net in 192.0.2.0/24 198.18.0.0/30 203.0.113.0/24; do ip -n $visited route add $net via 198.18.0.5 dev eth-core; done
}

down() {
  for ns in $core $f1 $f2 $home $visited; do ip netns del $ns 2>/dev/null || true; done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [LAB]" >&2; exit 2 ;;
esac
