# Issue 23, one GPU call (one H100, ~6 minutes): is the top-p kernel the better cut at every batch?
# `D=400 bash scripts/gpu/g23d.sh` from the repository root, carry [.whl]. The seventh H100 run's profile found
# top-p's vocabulary sort a fifth of the default engine's step at batch 64, where `TopP`'s "auto" takes the sort
# (the kernel only for one row); at batch 8 the kernel was 4x faster in a graph. This call measures:
#   1. the kernel against the sort (and transformers' rule) at batch 1, 8, 16, 32, 64, eager and in a CUDA graph;
#   2. batch 64 and batch 8 of the default engine with `--top-p-method kernel` and `sort` in the same run
#      (the profile of the kernel run at batch 64), and HF's static cache for the ratio.
source scripts/gpu/call.sh g23d 400
{ nvidia-smi -L; date -u; python3 -c "import sys, torch, triton, transformers; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__, transformers.__version__)"
  } > $R/env.txt 2>&1; cat $R/env.txt
timeout $(cap 60) python3 benchmarks/truncation.py --device cuda --batch 1 8 16 32 64 --iters 20 --reps 3 \
  --methods sort kernel transformers --modes eager graph --out $R/truncation_h100_kernel.json > $R/truncation.log 2>&1
step truncation $?
T="python3 benchmarks/text_generate.py --device cuda --random-weights --reps 3 --engine-timeout 80"
timeout $(cap 110) $T --engines loop-auto --batch 64 --top-p-method kernel --profile --out $R/text_h100_b64_kernel.json > $R/text_b64_kernel.log 2>&1
step text_b64_kernel $?
timeout $(cap 110) $T --engines loop-auto,hf-static --batch 64 --top-p-method sort --out $R/text_h100_b64_sort.json > $R/text_b64_sort.log 2>&1
step text_b64_sort $?
timeout $(cap 60) $T --engines loop-auto --batch 8 --top-p-method kernel --out $R/text_h100_b8_kernel.json > $R/text_b8_kernel.log 2>&1
step text_b8_kernel $?
timeout $(left) $T --engines loop-auto,hf-static --batch 8 --top-p-method sort --out $R/text_h100_b8_sort.json > $R/text_b8_sort.log 2>&1
step text_b8_sort $?
date -u; grep -hE "^ +[0-9]+ .*(loop|hf)|FAILED|failed|device kernels" $R/text_b*.log | head -30; grep -E "^batch" $R/truncation.log | head -40
