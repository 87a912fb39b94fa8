#!/bin/sh
# need.sh FILE... -- COMMAND [ARGS...]
# Runs COMMAND when every FILE exists. Otherwise prints what is missing and exits 77, which
# ctest (SKIP_RETURN_CODE 77) reports as skipped -- or, when KITE_REQUIRE_DATA=1, exits 1 so
# that a missing model or data set fails the run (CI sets it).
missing=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  [ -e "$1" ] || missing="$missing $1"
  shift
done
[ "${1:-}" = "--" ] || { echo "need.sh: usage: need.sh FILE... -- COMMAND [ARGS...]" >&2; exit 2; }
shift
if [ -n "$missing" ]; then
  if [ -n "${KITE_REQUIRE_DATA:-}" ] && [ "${KITE_REQUIRE_DATA}" != "0" ]; then
    echo "need.sh: missing:$missing (KITE_REQUIRE_DATA is set: fetch the models with tools/fetch_*.py and set KITE_DATA)" >&2
    exit 1
  fi
  echo "SKIPPED: missing:$missing (fetch the models with tools/fetch_*.py; set KITE_DATA to the data folder)"
  exit 77
fi
exec "$@"
