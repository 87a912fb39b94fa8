#!/bin/sh
# stdin.sh TEXT COMMAND [ARGS...]: runs COMMAND with TEXT (printf %b escapes) on its standard
# input, for the interactive mode of kite-rag.
text="$1"; shift
printf '%b' "$text" | "$@"
