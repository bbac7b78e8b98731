# Sourced by the check scripts (lint-charts.sh, check-monitoring.sh): a scratch directory
# $out removed on exit, and run WHAT CMD...: runs CMD quietly, prints "ok   WHAT", or
# "FAIL WHAT" and CMD's output, and sets failed=1 (the script ends with `exit $failed`).
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

failed=0
run() {
  local what=$1
  shift
  if ! "$@" >"$out/log" 2>&1; then
    echo "FAIL $what" >&2
    cat "$out/log" >&2
    failed=1
  else
    echo "ok   $what"
  fi
}
