#!/usr/bin/env bash
# Installs, idempotently, what roamlab's lab and tests need on Debian (12 or later):
# kernel tools for checking the lab, the real clients the tests drive, and the benchmark's
# timers; with --tests, also what only the tests need (Chromium, for the report test).
# Re-running it installs nothing that is already there. Needs root for apt-get.
set -euo pipefail

packages=(
  iproute2        # ip and tc: the benchmark's baseline and the tests' view of the kernel
  iputils-ping    # ping
  bind9-dnsutils  # dig, nsupdate
  traceroute
  tcpdump
  procps          # pgrep, sysctl
  psmisc
  time            # /usr/bin/time: peak memory in the benchmark
  hyperfine
  jq              # JSON in the benchmark scripts
  isc-dhcp-client # dhclient, udhcpc and dhcpcd: stock DHCP clients the terminals can run
  udhcpc
  dhcpcd-base
  osmo-hlr        # Osmocom's HLR: the real GSUP peer of the interop test
  kea-admin       # perfdhcp: the DHCP relay and load generator of the relay test and bench-dhcp.sh
  bind9           # named: BIND as a lab's DNS server (`{ kind: dns, server: bind }`)
  baresip-core    # a real SIP user agent at both ends of `roamlab call` (audio from a tone)
  tshark          # reads `roamlab capture signaling` back as GSUP (the capture test)
  ca-certificates
  curl
  build-essential
)
if [ "${1:-}" = --tests ]; then
  packages+=(
    chromium          # headless, opens `roamlab run --report`'s page in the report test
    fonts-dejavu-core # text for it to lay out
    podman            # builds the Dockerfile and runs the demo in it (the container test)
    runc              # podman's runtime there (crun refuses a hybrid cgroup layout)
    debootstrap       # the Debian 12 base image, from Debian's packages (no registry here)
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  # The lab runs named, osmo-hlr and the rest in its own namespaces: their packages must not
  # start system-wide daemons on this machine (policy-rc.d says no to every service start,
  # for the length of the install only, and only when no policy is in place already).
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    made_policy=1
    trap '$sudo rm -f "$policy"' EXIT
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; trap - EXIT; fi
fi

# Rust 1.88 or newer builds roamlab; Debian 12's own rustc is too old, so rustup is used.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: installing Rust with rustup"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
fi
rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n' 1.88.0 "$rust" | sort -V | head -1)" != 1.88.0 ]; then
  echo "install-deps: rustc $rust is older than 1.88; run: rustup update stable" >&2
  exit 1
fi
echo "install-deps: ready (rustc $rust)"
