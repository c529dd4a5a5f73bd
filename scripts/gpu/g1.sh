# call 1 (carry .gpuA .gpuE; scripts/gpu/pack.sh makes them): keep the files; the guidance samples (issue 18) at NFE 10 and 20, alone on
# the GPU (their images/s are the table's); then fashion-small's DC-Solver ratios (issue 24)
left() { l=$((${D:-560}-SECONDS)); [ $l -gt 1 ] && echo $l || echo 1; }
K=/root/keep; mkdir -p $K/w $K/data
cp .gpuA/incA $K/; cp .gpuE/w/* $K/w/; cp .gpuE/*.sh $K/
source $K/restore.sh
nvidia-smi -L; date -u
timeout $(( $(left) > 20 + 5 ? $(left) - 20 : 1 )) python3 -m decoding.evals.guidance run --adapters models/fashion-large-agd --nfe 10 20 --n 10000 --device cuda --out $K/guidance --only none cfg-1.5 cfg-2 cfg-3 agd-1.5 agd-2 agd-3 > $OUT/guidance-1.log 2>&1
[ -n "$ONLY" ] || timeout $(( $(left) > 20 + 5 ? $(left) - 20 : 1 )) python3 -m decoding.evals.guidance run --adapters models/fashion-large-agd --nfe 10 20 --n 10000 --device cuda --out $K/guidance > $OUT/guidance-1b.log 2>&1
echo "guidance rc $?"; date -u
cp $K/guidance/timings.json $OUT/guidance_timings_1.json; ls $K/guidance/samples | wc -l
[ -n "$ONLY" ] || [ -f $K/w/dc_small.safetensors ] || timeout $(left) python3 benchmarks/solver_dc.py --model fashion-small --save --spacing logsnr_trunc --variants final --search-samples 64 --device cuda > $OUT/dc-small.log 2>&1
echo "dc rc $?"; [ -f $K/w/dc_small.safetensors ] || { cp models/fashion-small/dc_solver_ratios.safetensors $K/w/dc_small.safetensors && cp $K/w/dc_small.safetensors $OUT/; }
tail -n 3 $OUT/*.log; date -u
