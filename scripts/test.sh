#!/usr/bin/env bash
# Runs all three tiers of tests: pure, root (real labs) and end-to-end (real clients),
# then, in CI, a short fuzz run of every decoder (scripts/fuzz.sh).
# The root tiers need root: run as root, or the test binaries are run through `sudo -E`.
# With ROAMLAB_E2E=required (as in CI) a root test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --tests >/dev/null
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" -ne 0 ]; then
  host=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')
  export "CARGO_TARGET_${host}_RUNNER=sudo -E"
fi
cargo test --locked --no-fail-fast "$@"
# The short fuzz run: every decoder's target for 20 s from the committed seeds (the known
# inputs are regression tests above either way). CI runs it; elsewhere it is opt-in, as
# its build takes minutes.
if [ $# -eq 0 ] && { [ "${CI:-}" = true ] || [ -n "${ROAMLAB_FUZZ_SECONDS:-}" ]; }; then
  scripts/fuzz.sh "${ROAMLAB_FUZZ_SECONDS:-20}"
else
  echo "test: short fuzz run skipped (CI runs it; ROAMLAB_FUZZ_SECONDS=20 ./scripts/test.sh runs it here)"
fi
