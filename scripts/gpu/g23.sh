# Issue 23, one GPU call (one H100, ~9 minutes): `bash scripts/gpu/g23.sh` from the repository root,
# carry [.whl, .gpuE] (the wheel kit: xformers, diffusers; .gpuE/w holds fashion-large's weights, which the
# slim tree of scripts/gpu/slim.sh leaves out; scripts/gpu/pack.sh makes it).
# Correctness first (the gpu tests of the new kernels; TESTS=all for more), then the benchmarks, each step capped so that
# the whole call stays inside D seconds (default 530); every log and JSON goes to one folder, tarred
# into $OUT/g23.tar at the end (also when a step fails or the call is cut short).
source scripts/gpu/call.sh g23 530
[ -f models/fashion-large/model.safetensors ] || cp .gpuE/w/fashion-large.safetensors models/fashion-large/model.safetensors \
  || echo "no fashion-large weights: the image steps will fail"
{ nvidia-smi -L; date -u; python3 -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__)"
  python3 -c "import transformers; print('transformers', transformers.__version__)"
  python3 -c "import xformers, diffusers; print('xformers', xformers.__version__, 'diffusers', diffusers.__version__)"
  echo "PYTHONPATH=$PYTHONPATH"; } > $R/env.txt 2>&1; cat $R/env.txt
# 1. correctness on the GPU (no captured DEBUG logs: -p no:logging): the new kernels' files first;
# TESTS=all adds the files the earlier runs passed (sort-free search, image graphs, step fusion, no sync)
files="tests/nn/test_fused_decode.py tests/processors/test_top_p_kernel.py tests/processors/test_graphed.py tests/nn/test_decode_attention.py tests/text/test_gpu.py"
[ "${TESTS:-new}" = all ] && files="$files tests/processors/test_sort_free.py tests/image/test_graphs.py \
  tests/text/test_step_fusion.py tests/image/test_no_device_sync.py"
timeout $(cap 120) python3 -m pytest -q -m gpu -p no:cacheprovider -p no:logging --tb=short -rfEs $files > $R/pytest_gpu.log 2>&1
step pytest $?; tail -n 15 $R/pytest_gpu.log
# 2. text at batch 1 (the fused engines launch with the shipped table, decoding/nn/fused_decode_tuned.json,
# measured at 14:12 UTC on 2026-12-07): the tuned fused engine, HF's static cache and the unfused step in
# one run, then the per-token device-time profile of the first engine (device busy fraction < 1: the
# host's eager ops between graph replays set the pace)
timeout $(cap 250) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 1 --reps 3 \
  --engines loop-fused,hf-static,loop-triton,hf --engine-timeout 70 --profile --out $R/text_h100_b1.json > $R/text_b1.log 2>&1
step text_b1 $?
# 2b. the same engine with the state-free processor chain as eager ops (before decoding/processors/graphed.py)
timeout $(cap 80) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 1 --reps 3 --skip-hf \
  --engines loop-fused --processors-graph off --engine-timeout 60 --out $R/text_h100_b1_eager_processors.json > $R/text_b1_eager.log 2>&1
step text_b1_eager_processors $?
# 3. text at batch 64, the default attention (SDPA) and the Triton split kernel (the compiled step needs ~45-60 s to build: a 90 s cap per engine)
timeout $(cap 260) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 64 --reps 3 \
  --engines loop,loop-triton,hf-static,hf --engine-timeout 90 --out $R/text_h100_b64.json > $R/text_b64.log 2>&1
step text_b64 $?
# 3b. the fused engine with TopP(method="kernel") inside the graphed chain (35.9 us against the sort's 80.9
# replayed from a graph at 14:18 UTC on 2026-12-07; eagerly it did not pay)
timeout $(cap 80) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 1 --reps 3 --skip-hf \
  --engines loop-fused --top-p-method kernel --engine-timeout 60 --out $R/text_h100_b1_graphed_topp_kernel.json > $R/text_b1_graphed_kernel.log 2>&1
step text_b1_graphed_topp_kernel $?
# 4. the fused kernels' launches at batch 8 (batch 1 is shipped; not exported: a batch-8 table alone would
# also serve batch 1), then the top-p kernel's rows (compiled included) with what is left
timeout $(cap 150) python3 benchmarks/fused_decode_tune.py --batch 8 --blocks 1 2 4 --block-k 64 128 256 \
  --dot-blocks 16 32 --dot-block-k 32 64 128 --out $R/fused_tune_h100_b8.json > $R/fused_tune_b8.log 2>&1
step fused_tune_b8 $?; grep -A2 "^batch" $R/fused_tune_b8.log | head -30
timeout $(left) python3 benchmarks/truncation.py --device cuda --batch 1 8 --iters 20 --reps 3 \
  --out $R/truncation_h100.json > $R/truncation.log 2>&1
step truncation $?
if [ -n "${IMAGES:-}" ]; then  # measured at 14:19 UTC on 2026-12-07 (10.4x / 8.1x / 1.87x diffusers): on request
  timeout $(cap 45) python3 benchmarks/image_throughput.py --device cuda --model models/fashion-large --batch 1 16 --nfe 10 \
    --peer diffusers --attention sdpa --out $R/image_small_batch_h100.json > $R/image_small.log 2>&1
  step image_small $?
fi
date -u; grep -hE "^ +[0-9]+ .*(loop|hf)|FAILED|failed" $R/text_b*.log | head -40; grep -E "^batch" $R/truncation.log | head -60
tail -n 4 $R/image_*.log
