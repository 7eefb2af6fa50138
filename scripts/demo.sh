#!/usr/bin/env bash
# The newcomer's first command: installs what is needed, builds roamlab, and runs the main
# job, `roamlab demo` (the built-in lab, a phone roaming in, lookups, ping and HTTP by name,
# detach, teardown; every step checked). Uses sudo only where root is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q
if [ "$(id -u)" -eq 0 ]; then
  exec "$(scripts/roamlab-bin)" demo "$@"
else
  exec sudo "$(scripts/roamlab-bin)" demo "$@"
fi
