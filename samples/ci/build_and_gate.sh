#!/usr/bin/env bash
# CI step: build the artifacts, apply the recipe's gates, publish the report either way.
#
# The exit code is qconvert's: 0 ok, 1 internal error, 2 bad input, 3 a gate or parity
# check failed, 4 a requested target is unavailable. A failed gate still writes OUT
# (report.html, report.md, report.json), so the report can be uploaded and read.
# Every setting has a default for the bundled digits sample; override by environment.
set -uo pipefail

QCONVERT=${QCONVERT:-qconvert}
MODEL=${MODEL:-samples/digits/model.py:build}
WEIGHTS=${WEIGHTS:-samples/digits/weights.pt}
RECIPE=${RECIPE:-samples/digits/recipe.yaml}
CALIB=${CALIB:-samples/digits/calib.npz}
EVAL=${EVAL:-samples/digits/eval.npz}
TARGETS=${TARGETS:-onnx}
OUT=${OUT:-OUT/ci}

target_args=()
for t in $TARGETS; do target_args+=(--target "$t"); done

"$QCONVERT" build --model "$MODEL" --weights "$WEIGHTS" --recipe "$RECIPE" \
  --calib-data "$CALIB" --eval-data "$EVAL" "${target_args[@]}" --out "$OUT" --quiet
rc=$?

# GitHub Actions shows this file on the run's summary page.
if [ -f "$OUT/report.md" ] && [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  cat "$OUT/report.md" >> "$GITHUB_STEP_SUMMARY"
fi
exit "$rc"
