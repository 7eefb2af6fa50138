#!/usr/bin/env bash
# Runs all three tiers of tests: pure, root (real labs) and end-to-end (real clients).
# The root tiers need root: run as root, or the test binaries are run through `sudo -E`.
# With ROAMLAB_E2E=required (as in CI) a root test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >/dev/null
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
  host=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')
  export "CARGO_TARGET_${host}_RUNNER=sudo -E"
fi
exec cargo test --locked "$@"
