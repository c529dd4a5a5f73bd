# Issue 23, one GPU call (one H100, ~9 minutes): the split attention kernel tuned for many rows against SDPA, and the
# default engine with it (and with the top-p kernel now taken up to 64 rows) against HF in the same run.
# `D=540 bash scripts/gpu/g23e.sh` from the repository root, carry [.whl]. The eighth H100 run's profile at batch 64
# found cuDNN's attention a third of the step (17.3 us a layer for 3 queries a key/value head over 328 slots); the
# split kernel's untuned launch (tl.dot on the queries padded to 16 rows) was slower still.
#   1. the split kernel's launches at batch 8 and 64 timed against SDPA as the compiled step calls it;
#   2. the launch table = the shipped rows + the sweep's attention rows (DECODING_FUSED_CONFIGS): at the run's commit
#      (297f51e) the compiled step of a batch whose row beat SDPA ran the kernel; no row did (SDPA 10.8 / 19.0 us
#      against the kernel's best 31.1 / 49.6 us at batch 8 / 64), so that switch was taken out again. The merged
#      table's batch-8 row also served batch 1's fused step (a launch tuned at a larger batch): batch 1 fell to 484
#      tok/s in this call; the shipped table has no attention rows;
#   3. batch 64: loop-auto (so the kernel where it won), loop-sdpa (SDPA forced) and HF's static cache, with the
#      profile of loop-auto; the GPU tests of the kernel and the text engine;
#   4. batch 8 and batch 1, the same engines.
source scripts/gpu/call.sh g23e 540
{ nvidia-smi -L; date -u; python3 -c "import sys, torch, triton, transformers; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__, transformers.__version__)"
  python3 -c "import xformers; print('xformers', xformers.__version__)"; } > $R/env.txt 2>&1; cat $R/env.txt
timeout $(cap 150) python3 benchmarks/fused_decode_tune.py --batch 8 64 --kernels decode_attention --attn-peer sdpa \
  --attn-block-n 16 32 64 --attn-splits 1 2 4 --attn-warps 2 4 --out $R/attn_sdpa_h100.json > $R/attn.log 2>&1
step attn_sweep $?
python3 scripts/gpu/attention_rows.py $R/attn_sdpa_h100.json $R/tuned_merged.json
export DECODING_FUSED_CONFIGS=$R/tuned_merged.json
T="python3 benchmarks/text_generate.py --device cuda --random-weights --reps 3 --engine-timeout 80"
timeout $(cap 190) $T --batch 64 --engines loop-auto,loop-sdpa,hf-static --profile --out $R/text_h100_b64.json \
  > $R/text_b64.log 2>&1
step text_b64 $?
timeout $(cap 90) python3 -m pytest -q -m gpu -x tests/nn/test_decode_attention.py tests/text/test_gpu.py \
  tests/processors/test_top_p_kernel.py > $R/pytest_gpu.log 2>&1
step pytest_gpu $?
timeout $(cap 100) $T --batch 8 --engines loop-auto,loop-sdpa,hf-static --out $R/text_h100_b8.json > $R/text_b8.log 2>&1
step text_b8 $?
timeout $(left) $T --batch 1 --engines loop-auto,hf-static --out $R/text_h100_b1.json > $R/text_b1.log 2>&1
step text_b1 $?
date -u; grep -hE "^ +[0-9]+ .*(loop|hf)|FAILED|failed|device kernels" $R/text_b*.log | head -30
grep -E "^batch|block" $R/attn.log | head -20; tail -3 $R/pytest_gpu.log
