#!/usr/bin/env bash
# The fresh-clone check: what a new user (and CI) gets from the README's two commands.
#
# Clones HEAD of this repository into a temporary folder and runs there, with an empty virtualenv,
# an empty engine cache ($DECODING_CACHE), an empty Hugging Face home and no pip cache:
#   1. `.ci/run` (= `make test`: set-up from requirements/dev.lock, then the default test suite);
#   2. `make demo`.
# Uncommitted changes are not part of the check (it says so). KEEP=1 keeps the folder.
set -euo pipefail
src=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
if [ -n "$(git -C "$src" status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes in $src are not checked (only HEAD is cloned)" >&2
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/decoding-fresh.XXXXXX")
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$tmp"' EXIT
git clone -q "$src" "$tmp/decoding"
cd "$tmp/decoding"
export DECODING_CACHE="$tmp/cache" HF_HOME="$tmp/hf" PIP_NO_CACHE_DIR=1
echo "fresh clone of $(git rev-parse --short HEAD) in $tmp/decoding"
t0=$(date +%s)
.ci/run
t1=$(date +%s)
make demo
t2=$(date +%s)
echo "fresh-clone check passed: make test $((t1 - t0)) s (set-up included), make demo $((t2 - t1)) s"
