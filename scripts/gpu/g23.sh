# Issue 23, second GPU call (one H100, ~9 minutes): `bash scripts/gpu/g23.sh` from the repository root,
# carry [.whl, .gpuE] (the wheel kit: xformers, diffusers; .gpuE/w holds fashion-large's weights, which the
# slim tree of scripts/gpu/slim.sh leaves out; scripts/gpu/pack.sh makes it).
# Correctness first (the gpu tests of the six files), then the benchmarks, each step capped so that
# the whole call stays inside D seconds (default 530); every log and JSON goes to one folder, tarred
# into $OUT/g23.tar at the end (also when a step fails or the call is cut short).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD LD_LIBRARY_PATH=/tmp/site/nvidia/cuda_runtime/lib:$LD_LIBRARY_PATH \
  || echo "wheel kit NOT installed (xformers, diffusers missing)"
[ -f models/fashion-large/model.safetensors ] || cp .gpuE/w/fashion-large.safetensors models/fashion-large/model.safetensors \
  || echo "no fashion-large weights: the image steps will fail"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=1  # (PYTHONPATH is set above, once: nothing resets it)
R=/root/r23; mkdir -p $R
trap 'tar -C $R -cf $OUT/g23.tar . 2>/dev/null' EXIT
left() { l=$((${D:-530}-SECONDS)); [ $l -gt 1 ] && echo $l || echo 1; }
cap() { a=$(left); [ $a -gt $1 ] && echo $1 || echo $a; }
step() { echo "$1 rc $2 at ${SECONDS}s"; echo "$1 rc $2 at ${SECONDS}s" >> $R/steps.txt; }
{ nvidia-smi -L; date -u; python3 -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, torch.version.cuda, triton.__version__)"
  python3 -c "import transformers; print('transformers', transformers.__version__)"
  python3 -c "import xformers, diffusers; print('xformers', xformers.__version__, 'diffusers', diffusers.__version__)"
  echo "PYTHONPATH=$PYTHONPATH"; } > $R/env.txt 2>&1; cat $R/env.txt
# 1. correctness on the GPU (no captured DEBUG logs: -p no:logging): the new kernels' files first;
# TESTS=all adds the files the earlier runs passed (sort-free search, image graphs, step fusion, no sync)
files="tests/nn/test_fused_decode.py tests/processors/test_top_p_kernel.py tests/nn/test_decode_attention.py tests/text/test_gpu.py"
[ "${TESTS:-new}" = all ] && files="$files tests/processors/test_sort_free.py tests/image/test_graphs.py \
  tests/text/test_step_fusion.py tests/image/test_no_device_sync.py"
timeout $(cap 120) python3 -m pytest -q -m gpu -p no:cacheprovider -p no:logging --tb=short -rfEs $files > $R/pytest_gpu.log 2>&1
step pytest $?; tail -n 15 $R/pytest_gpu.log
# 1b. block sizes of the fused decode kernels against the torch ops they replace (JSON rewritten per kernel)
# (CUDA-core products at 1-8 rows a program, tl.dot at 16-32); the fused engines below launch with the
# winners (DECODING_FUSED_CONFIGS: the JSON's "best" list, see decoding.nn.fused_decode.launch_config)
timeout $(cap 150) python3 benchmarks/fused_decode_tune.py --batch 1 --out $R/fused_tune_h100.json > $R/fused_tune.log 2>&1
step fused_tune $?; grep -A2 "^batch" $R/fused_tune.log | head -30
python3 -c "import json, sys; sys.exit(not json.load(open('$R/fused_tune_h100.json'))['best'])" 2>/dev/null \
  && export DECODING_FUSED_CONFIGS=$R/fused_tune_h100.json && echo "fused kernels launch with $DECODING_FUSED_CONFIGS"
# 2. text at batch 1: engines in order of need, each capped (a row is saved as soon as it finishes); the
# per-token device-time profile is of the first engine, the fused kernels of decoding/nn/fused_decode.py
# (device busy fraction < 1: the host's eager ops set the pace)
timeout $(cap 200) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 1 --reps 3 \
  --engines loop-fused,loop-fused6,loop-triton,hf-static,loop,hf,loop-sync1 --engine-timeout 60 --profile --out $R/text_h100_b1.json > $R/text_b1.log 2>&1
step text_b1 $?
# 3. top-p / typical / min-p: search vs sort vs transformers vs the Triton top-p kernel (decoding/processors/
# cut_kernel.py; also at 1,024 and 4,096 vocabulary entries a program), eager / CUDA graph / compiled;
# batch 1 first (the decode step's case)
timeout $(cap 75) python3 benchmarks/truncation.py --device cuda --batch 1 8 64 --iters 20 --reps 3 --kernel-chunks 1024 4096 \
  --out $R/truncation_h100.json > $R/truncation.log 2>&1
step truncation $?
# 3b. the fused engine again with TopP(method="kernel") in the loop (the sort's radix passes replaced)
timeout $(cap 70) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 1 --reps 3 --skip-hf \
  --engines loop-fused,loop-triton --top-p-method kernel --engine-timeout 30 --profile --out $R/text_h100_b1_topp_kernel.json > $R/text_b1_kernel.log 2>&1
step text_b1_topp_kernel $?
# 4. text at batch 64
timeout $(cap 100) python3 benchmarks/text_generate.py --device cuda --random-weights --batch 64 --reps 3 \
  --engines loop,hf,loop-triton,hf-static,loop-sync1 --engine-timeout 45 --profile --out $R/text_h100_b64.json > $R/text_b64.log 2>&1
step text_b64 $?
# 5. images at small batch (graphs vs eager, against diffusers), then batch 256 (must stay >= 1.0x)
timeout $(cap 45) python3 benchmarks/image_throughput.py --device cuda --model models/fashion-large --batch 1 16 --nfe 10 \
  --peer diffusers --attention sdpa --out $R/image_small_batch_h100.json > $R/image_small.log 2>&1
step image_small $?
timeout $(left) python3 benchmarks/image_throughput.py --device cuda --model models/fashion-large --batch 256 --nfe 10 \
  --peer diffusers --attention sdpa --out $R/image_b256_h100.json > $R/image_b256.log 2>&1
step image_b256 $?
date -u; grep -hE "^ +[0-9]+ .*(loop|hf)|FAILED|failed" $R/text_b*.log | head -40; grep -E "^batch" $R/truncation.log | head -60
tail -n 4 $R/image_*.log
