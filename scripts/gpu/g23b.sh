# Issue 23, programmatic dependent launch (PDL) of the fused decode kernels: ONE GPU call (one H100, ~8 minutes):
# `bash scripts/gpu/g23b.sh` from the repository root, carry [.whl, .gpuE] (the wheel kit, as scripts/gpu/g23.sh).
# Correctness first (the gpu tests of the PDL pieces and of the split attention variants), then batch 1 text:
# the PDL engine (uncompiled, as StaticCausalLM(pdl=True) runs it; profiled), the compiled fused engine and the
# uncompiled one (the PDL engine's control), then the compiled fused engine with inductor's own kernels under PDL,
# then the split attention launch sweep. Each step capped so the whole call stays inside D seconds (default 470);
# every log and JSON goes to one folder, tarred into $OUT/g23b.tar at the end (also when a step fails or is cut).
source scripts/gpu/call.sh g23b 470
{ nvidia-smi -L; date -u; python3 -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__)"
  python3 -c "import torch._inductor.config as c; print('inductor enable_pdl', getattr(c.triton, 'enable_pdl', 'missing'))"
  echo "PYTHONPATH=$PYTHONPATH"; } > $R/env.txt 2>&1; cat $R/env.txt
# 1. correctness on the GPU: every test of the PDL file (its PTX checks and the inductor check too), and the gpu
# tests of the split attention (its CUDA-core variant and launch knobs against the reference)
timeout $(cap 110) python3 -m pytest -q -m "gpu or not gpu" -p no:cacheprovider -p no:logging --tb=short -rfEs \
  tests/nn/test_pdl.py > $R/pytest_pdl.log 2>&1
step pytest_pdl $?; tail -n 8 $R/pytest_pdl.log
timeout $(cap 60) python3 -m pytest -q -m gpu -p no:cacheprovider -p no:logging --tb=short -rfEs \
  tests/nn/test_decode_attention.py -k "launch_variants or equals_reference" > $R/pytest_attention.log 2>&1
step pytest_attention $?; tail -n 5 $R/pytest_attention.log
# 1b. the default engine's fused="auto" (fused at batch 1, where the shipped table has launches; unfused at batch 3)
timeout $(cap 100) python3 -m pytest -q -m gpu -p no:cacheprovider -p no:logging --tb=short -rfEs \
  tests/nn/test_fused_auto.py > $R/pytest_fused_auto.log 2>&1
step pytest_fused_auto $?; tail -n 5 $R/pytest_fused_auto.log
# 2. batch 1, SmolLM2-135M shape, bf16: the PDL engine first (the one --profile profiles), then its two controls:
# loop-fused (compiled, today's engine) and loop-fused-eager (uncompiled, like the PDL engine)
timeout $(cap 170) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 1 --reps 3 --skip-hf \
  --engines loop-fused-pdl,loop-fused,loop-fused-eager --engine-timeout 75 --profile \
  --out $R/text_h100_b1_pdl.json > $R/text_b1_pdl.log 2>&1
step text_b1_pdl $?
# 2b. the compiled fused engine with inductor's own kernels (embedding, the final norm, ...) launched with PDL
timeout $(cap 80) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 1 --reps 3 --skip-hf \
  --engines loop-fused --inductor-pdl on --engine-timeout 70 --out $R/text_h100_b1_inductor_pdl.json > $R/text_b1_ipdl.log 2>&1
step text_b1_inductor_pdl $?
# 3. the split attention kernel's launch at batch 1 (328-slot cache, what step 2's engines hold): tl.dot (float32
# operands: FMAs on 16 padded query rows) against tl.sum products (4 rows), keys per block, chunks, warps
timeout $(cap 150) python3 benchmarks/fused_decode_tune.py --batch 1 --kernels decode_attention --slots 328 \
  --attn-block-n 16 32 64 --attn-splits 1 2 3 6 --attn-warps 1 2 4 --reps 10 \
  --out $R/attention_tune_h100_b1.json > $R/attention_tune.log 2>&1
step attention_tune $?
# 4. with what is left: the shipped table plus the attention winner (DECODING_FUSED_CONFIGS), the PDL engine again
python3 -c "import json; a = json.load(open('decoding/nn/fused_decode_tuned.json')); \
b = json.load(open('$R/attention_tune_h100_b1.json'))['best']; a['best'] += b; json.dump(a, open('$R/tuned_with_attention.json', 'w'))" \
  && DECODING_FUSED_CONFIGS=$R/tuned_with_attention.json timeout $(left) python3 benchmarks/text_generate.py --device cuda \
  --random-weights --batch 1 --reps 3 --skip-hf --engines loop-fused-pdl,loop-fused-eager --engine-timeout 40 \
  --out $R/text_h100_b1_pdl_tuned_attention.json > $R/text_b1_pdl_tuned_attention.log 2>&1
step text_b1_pdl_tuned_attention $?
date -u; cat $R/steps.txt; grep -hE "^ +[0-9]+ .*loop|failed|device kernels per token" $R/text_b1*.log | head -20
grep -A12 "decode_attention" $R/attention_tune.log | head -40
