#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder that takes bytes from outside (fuzz/, cargo-fuzz
# with libFuzzer): each target for SECONDS (default 60), one per core at a time, from the
# committed seeds plus the corpus grown by earlier runs, with memory and input limits. Prints a table of
# runs, exec/s and coverage; a crash's input is saved under fuzz/artifacts/<target>/ and
# the script ends non-zero after running the rest.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_CMIN=1 scripts/fuzz.sh 0   # after a long run: minimise corpus + seeds into seeds
#
# With a nightly toolchain the targets are built with AddressSanitizer; with stable only,
# without a sanitizer (coverage guidance, overflow checks and debug assertions all stay).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

seconds=${1:-60}
shift || true
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked --quiet cargo-fuzz
fi
if cargo +nightly --version >/dev/null 2>&1; then
  # FUZZ_SANITIZER=none trades AddressSanitizer (for the unsafe code of dependencies)
  # for two to three times the executions.
  toolchain=(+nightly) sanitizer=${FUZZ_SANITIZER:-address}
else
  toolchain=() sanitizer=none
  echo "fuzz: no nightly toolchain; building without a sanitizer (safe Rust needs none)"
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)

# Debug assertions on, as in the test suite: dhcproto's own asserts are part of what
# a datagram must not reach.
echo "fuzz: building ${#targets[@]} targets (sanitizer: $sanitizer)"
mkdir -p artifacts
cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer" --debug-assertions >/dev/null 2>artifacts/build.log \
  || { cat artifacts/build.log >&2; exit 1; }

max_len() {
  case $1 in
    topology) echo 65536 ;;
    hlr_core|vlr_core|lease_book|dhcp_server|ipa_stream) echo 16384 ;;
    *) echo 4600 ;;
  esac
}

# One target's run; its table row goes to artifacts/<target>/row, "FAILED" rows are counted
# after all have run.
fuzz_one() {
  local t=$1 log="artifacts/$1/last.log" status=0 dict=()
  [ -f "dicts/$t.dict" ] && dict=(-dict="dicts/$t.dict")
  cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" --debug-assertions "$t" \
    "corpus/$t" "seeds/$t" -- "${dict[@]}" \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=$?
  local runs rate cov ft result
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  if [ "$status" -eq 0 ]; then
    result=clean
  else
    crash=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
    result="FAILED (exit $status): ${crash:-see $log}"
  fi
  printf '%-12s %12s %10s %8s %8s %s\n' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result" \
    >"artifacts/$t/row"
}

for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  rm -f "artifacts/$t/row"
done
if [ "${FUZZ_CMIN:-0}" = 1 ]; then
  for t in "${targets[@]}"; do
    rm -rf "corpus/$t.min" && mkdir -p "corpus/$t.min"
    cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" --debug-assertions "$t" \
      "corpus/$t.min" "seeds/$t" "corpus/$t" -- -set_cover_merge=1 -max_len="$(max_len "$t")" \
      >"artifacts/$t/last.log" 2>&1
    rm -rf "seeds/$t" && mv "corpus/$t.min" "seeds/$t"
    echo "$t: seeds minimised to $(ls "seeds/$t" | wc -l) inputs"
  done
  exit 0
fi

# As many targets at once as there are cores (FUZZ_JOBS to change it): each libFuzzer
# run is one process on one core, so a 2-core machine halves the wall time.
jobs=${FUZZ_JOBS:-$(nproc)}
echo "fuzz: ${#targets[@]} targets × ${seconds} s, $jobs at a time"
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait
failed=()
printf '%-12s %12s %10s %8s %8s %s\n' target runs exec/s cov ft result
for t in "${targets[@]}"; do
  row=$(cat "artifacts/$t/row" 2>/dev/null || echo "$t ? FAILED: no result")
  echo "$row"
  case $row in *FAILED*) failed+=("$t") ;; esac
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}; logs and inputs in fuzz/artifacts/" >&2
  for t in "${failed[@]}"; do grep -m1 -B2 -A12 "panicked\|ERROR: " "artifacts/$t/last.log" >&2 || true; done
  exit 1
fi
