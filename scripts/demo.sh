#!/usr/bin/env bash
# The newcomer's first command: installs what is needed, builds roamlab, and runs the main
# job. For now that is: bring up the built-in lab, ping across it, write and look up DNS
# records through the lab's own DNS, show it, tear it down.
# Uses sudo only where root is needed (not at all when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
bin=$PWD/target/release/roamlab
lab=demo

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; }
step "bring up the built-in lab" roamlab up --name $lab
as_root "$bin" up --name $lab
trap 'step "tear it down" roamlab down $lab; as_root "$bin" down $lab' EXIT
step "fixed1 pings the visited network's router across the core" roamlab exec --lab $lab fixed1 -- ping -c 3 198.51.100.1
as_root "$bin" exec --lab $lab fixed1 -- ping -c 3 198.51.100.1
step "fixed1 pings the home network's DNS address" roamlab exec --lab $lab fixed1 -- ping -c 3 192.0.2.53
as_root "$bin" exec --lab $lab fixed1 -- ping -c 3 192.0.2.53
step "write a forward record at home and a reverse record in the visited network (TSIG-signed)" roamlab dns update …
as_root "$bin" dns update $lab home.example add phone1.home.example A 198.51.100.100
as_root "$bin" dns update $lab 100.51.198.in-addr.arpa add 100.100.51.198.in-addr.arpa PTR phone1.home.example
step "fixed1 looks the name up through the lab's resolver (answered by the home DNS)" roamlab exec --lab $lab fixed1 -- dig +noall +answer phone1.home.example
as_root "$bin" exec --lab $lab fixed1 -- dig +noall +answer phone1.home.example
step "fixed2 looks the address up (answered by the visited DNS)" roamlab exec --lab $lab fixed2 -- dig +noall +answer -x 198.51.100.100
as_root "$bin" exec --lab $lab fixed2 -- dig +noall +answer -x 198.51.100.100
step "what the kernel holds" roamlab status $lab
as_root "$bin" status $lab
