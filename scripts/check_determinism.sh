#!/usr/bin/env bash
# The longer determinism check of the validation suite: runs every claim twice at the given size with the
# same seed, once in this process (--workers 1) and once in 2 worker processes, and compares the two
# results.json files byte for byte (wall times are kept apart in timing.json). CI runs the fast version,
# tests/test_validation_determinism.py, on a few claims of every claim module.
#
#   bash scripts/check_determinism.sh [--size quick|full] [--seed N] [--keep DIR] [-- SUITE_OPTION ...]
#
# Options after "--" go to both runs of `python -m validation` (e.g. `-- --tags lmo` for a selection).
#
# Exit status: 0 when the two results.json are identical, 1 when they differ (the diff is printed),
# 2 on a usage error or when a run crashed (the suite's own exit status 1, an unexpected verdict, is
# reported but does not fail the check: it is the same in both runs or the diff shows why not).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
size=quick
seed=0
keep=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="${2:?--size needs quick or full}"; shift 2 ;;
    --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
    --keep) keep="${2:?--keep needs a folder}"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (expected --size, --seed or --keep)" >&2; exit 2 ;;
  esac
done
case "$size" in quick|full) ;; *) echo "error: --size must be quick or full, got '$size'" >&2; exit 2 ;; esac
case "$seed" in ''|*[!0-9]*) echo "error: --seed must be a non-negative integer, got '$seed'" >&2; exit 2 ;; esac

if [ -n "$keep" ]; then
  work="$keep"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi

status=()
for workers in 1 2; do
  echo "run with $workers worker(s): size $size, seed $seed -> $work/workers$workers" >&2
  rc=0
  "$PYTHON" -m validation --size "$size" --seed "$seed" --workers "$workers" --out "$work/workers$workers" --no-progress \
    ${extra[@]+"${extra[@]}"} > "$work/workers$workers.log" 2>&1 || rc=$?
  if [ "$rc" -gt 1 ] || [ ! -f "$work/workers$workers/results.json" ]; then
    echo "error: the run with $workers worker(s) failed (exit $rc); its log: $work/workers$workers.log" >&2
    tail -n 20 "$work/workers$workers.log" >&2
    trap - EXIT
    exit 2
  fi
  status+=("$rc")
done
echo "suite exit status: ${status[0]} (1 worker), ${status[1]} (2 workers)" >&2
if cmp -s "$work/workers1/results.json" "$work/workers2/results.json"; then
  echo "deterministic: results.json identical with 1 and 2 workers (size $size, seed $seed)"
  exit 0
fi
echo "NOT deterministic: results.json differs between 1 and 2 workers (size $size, seed $seed):" >&2
diff -u "$work/workers1/results.json" "$work/workers2/results.json" | head -n 200 >&2 || true
trap - EXIT
echo "(both runs kept in $work)" >&2
exit 1
