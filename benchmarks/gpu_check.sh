#!/usr/bin/env bash
# One GPU check (issue: scale-out), under 8 minutes on one GPU:
#   1. every chapter at a reduced paper-like size (profiles/gpu-check.yaml: ViT-B-32, 224 px, bf16 autocast,
#      400 built-in pairs, 2 epochs), one line per chapter with its seconds;
#   2. the trainer against open_clip_train on the same CSV (ViT-B-32, bf16 for both), and their ratio.
# Without a GPU it says so and exits 0, so CI (which never has one) skips it cleanly.
#   usage: bash benchmarks/gpu_check.sh [RUNS_DIR]        (default: a temporary folder)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU visible to torch here; skipped (nothing run)"
  exit 0
fi
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}')"
RUNS=${1:-$(mktemp -d)}
OUT=$(mktemp -d)
start=$(date +%s)
"$PY" -m clipmem_lib.book run --profile gpu-check --runs "$RUNS/runs" --out "$OUT/generated" --no-progress > "$OUT/book.log" 2>&1
book_rc=$?
grep -E "^\s+(ok|FAILED)\s" "$OUT/book.log" | sed 's/^ */chapter /'
echo "gpu_check: book rc $book_rc in $(( $(date +%s) - start )) s (log: $OUT/book.log; failed notebooks in $OUT/generated/failed)"
"$PY" benchmarks/vs_open_clip_train.py --model ViT-B-32 --device cuda --image-size 224 --pairs 512 --epochs 3 --batch 64 \
  --workers 4 2>&1 | tail -3
bench_rc=${PIPESTATUS[0]}
echo "gpu_check: done in $(( $(date +%s) - start )) s; book rc $book_rc, throughput rc $bench_rc"
[ "$book_rc" = 0 ] && [ "$bench_rc" = 0 ]
