# Issue 23, one short GPU call (one H100, ~4 minutes): two candidates for batch 64's attention (cuDNN's 17.3 us a layer
# is 38% of the step): the split attention on tensor cores (mma=True: bf16 products, float32 accumulation,
# FlashAttention's precision) against SDPA at batch 8, 32 and 64, and FlexAttention's decode kernel (backend "flex",
# compiled by inductor inside the step). Then batch 64 of the default engine with the sweep's rows in the launch table
# (a batch whose row beat SDPA runs the kernel in its compiled step: decoding.nn.decode_attention.beats_sdpa), SDPA
# forced, flex forced, and HF's static cache; the top-p kernel's vocabulary chunk a program at batch 64 (its 4 rounds
# and mask were 102 us of the step); the GPU tests of both.
# `D=270 bash scripts/gpu/g23g.sh` from the repository root, carry [.whl].
source scripts/gpu/call.sh g23g 270
timeout $(cap 45) python3 benchmarks/fused_decode_tune.py --batch 64 32 8 --kernels decode_attention --attn-peer sdpa \
  --attn-modes mma --attn-block-n 32 64 --attn-splits 1 2 4 --attn-warps 4 --out $R/attn_mma_h100.json > $R/attn.log 2>&1
step attn_sweep $?
python3 scripts/gpu/attention_rows.py $R/attn_mma_h100.json $R/tuned_merged.json
export DECODING_FUSED_CONFIGS=$R/tuned_merged.json
T="python3 benchmarks/text_generate.py --device cuda --random-weights --reps 3 --engine-timeout 60"
timeout $(cap 170) $T --batch 64 --engines loop-auto,loop-sdpa,loop-flex,hf-static --out $R/text_h100_b64.json \
  > $R/text_b64.log 2>&1
step text_b64 $?
timeout $(cap 30) python3 benchmarks/truncation.py --device cuda --batch 64 --methods kernel --modes graph \
  --kernel-chunks 512 1024 4096 8192 --iters 20 --reps 3 --out $R/truncation_chunks_h100.json > $R/truncation.log 2>&1
step truncation_chunks $?
timeout $(left) python3 -m pytest -q -m gpu tests/nn/test_flex_decode.py tests/nn/test_decode_attention.py \
  > $R/pytest_gpu.log 2>&1
step pytest_gpu $?
grep -hE "^ +[0-9]+ .*(loop|hf)|FAILED|failed" $R/text_b64.log | head; grep -E "^batch|block" $R/attn.log | head -20
grep -E "^batch" $R/truncation.log | head; tail -3 $R/pytest_gpu.log
