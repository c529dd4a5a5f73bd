# Issue 23, one GPU call (one H100, ~8 minutes): what docs/perf/gpu_speed.md still lacks, most valuable first.
# `D=540 bash scripts/gpu/g23c.sh` from the repository root, carry [.whl] (the wheel kit; no model weights needed:
# every row uses random weights of SmolLM2-135M's shape).
#   1. batch 1: the engine decoding.load builds (`loop-auto`: fused + PDL on Hopper) and HF in the same run;
#   2. batch 64: `loop-auto` (the compiled unfused step, default attention), the Triton split attention
#      (`loop-triton`) and HF in the same run, with the per-token profile of `loop-auto` (what the 3 ms a step is);
#   3. batch 8: the same engines plus the forced fused+PDL step (no measured launches at batch 8 yet);
#   4. the top-p / typical / min-p rows at batch 8 and 64 (sort against the Triton cut);
#   5. the fused kernels' launch sweep at batch 8 (what `fused="auto"` would need to fuse batch 8).
# Each step is capped so that the call stays inside D seconds; logs and JSON go to one folder, tarred into
# $OUT/g23c.tar at the end (also when a step fails or the call is cut short).
source scripts/gpu/call.sh g23c 530
{ nvidia-smi -L; date -u; python3 -c "import sys, torch, triton, transformers; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__, transformers.__version__)"
  } > $R/env.txt 2>&1; cat $R/env.txt
T="python3 benchmarks/text_generate.py --device cuda --random-weights --reps 3"
timeout $(cap 150) $T --batch 1 --engines loop-auto,hf-static,hf --engine-timeout 60 --out $R/text_h100_b1_auto.json > $R/text_b1.log 2>&1
step text_b1 $?
timeout $(cap 200) $T --batch 64 --engines loop-auto,loop-triton,hf-static,hf --engine-timeout 80 --profile \
  --out $R/text_h100_b64_auto.json > $R/text_b64.log 2>&1
step text_b64 $?
timeout $(cap 150) $T --batch 8 --engines loop-auto,loop-fused-pdl,hf-static,hf --engine-timeout 60 \
  --out $R/text_h100_b8.json > $R/text_b8.log 2>&1
step text_b8 $?
timeout $(cap 60) python3 benchmarks/truncation.py --device cuda --batch 8 64 --iters 20 --reps 3 \
  --out $R/truncation_h100_b8_b64.json > $R/truncation.log 2>&1
step truncation $?
timeout $(left) python3 benchmarks/fused_decode_tune.py --batch 8 --blocks 1 2 4 --block-k 64 128 256 \
  --dot-blocks 16 32 --dot-block-k 32 64 128 --out $R/fused_tune_h100_b8.json > $R/fused_tune_b8.log 2>&1
step fused_tune_b8 $?
date -u; grep -hE "^ +[0-9]+ .*(loop|hf)|FAILED|failed|profile" $R/text_b*.log | head -40; grep -E "^batch" $R/truncation.log | head -40
