#!/bin/sh
# expect_exit.sh STATUS REGEX COMMAND [ARGS...]
# Runs COMMAND and passes (exit 0) when it exits with STATUS and its output (stdout and stderr
# together) matches the extended regular expression REGEX; otherwise prints why and exits 1.
want="$1"; re="$2"; shift 2
out=$("$@" 2>&1); got=$?
printf '%s\n' "$out"
if [ "$got" != "$want" ]; then echo "expect_exit.sh: exit status $got; expected $want" >&2; exit 1; fi
if ! printf '%s\n' "$out" | grep -Eq -- "$re"; then echo "expect_exit.sh: output does not match: $re" >&2; exit 1; fi
exit 0
