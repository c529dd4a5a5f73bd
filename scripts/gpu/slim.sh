#!/usr/bin/env bash
# on: a detached commit of main without the big shipped files (the GPU call's tree); off: back to main.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
case "$1" in
on)
  git diff --quiet && git diff --cached --quiet || { echo "main is not clean"; exit 1; }
  git checkout -q --detach
  git rm -r -q --cached --ignore-unmatch -- 'models/*/*.safetensors' 'models/*/*.png' docs/PERFORMANCE.md 'docs/perf/*' benchmarks/results evals/results evals/reports >/dev/null
  git add -f -- $(git ls-tree -r --name-only main evals/reports | grep '\.py$')
  git commit -q -m slim --no-verify
  git clean -fdq -- models docs evals benchmarks/results >/dev/null || true
  git ls-files -z | xargs -0 du -cb | tail -1
  echo "slim tree checked out (detached): run scripts/gpu/slim.sh off before you edit or commit anything" ;;
off)
  git checkout -q -f main ;;
esac
