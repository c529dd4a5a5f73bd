# call 2 (carry .gpuB): Inception assembled; the guidance rows left; FID + class accuracy of every row and
# the report (issue 18); fashion-small's DC ratios checked by FID-10k against UniPC-2, seeds 0 and 1 (issue 24)
K=/root/keep
left() { l=$((${D:-550}-SECONDS)); [ $l -gt 1 ] && echo $l || echo 1; }
cp .gpuB/fashion_mnist_train.safetensors $K/; cat $K/incA .gpuB/incB > $K/inception.pt; sha1sum $K/inception.pt
source $K/restore.sh
date -u; G=$K/guidance
timeout $(( $(left) > 150 + 5 ? $(left) - 150 : 1 )) python3 -m decoding.evals.guidance run --adapters models/fashion-large-agd --nfe 10 20 --n 10000 --device cuda --out $G > $OUT/guidance-2.log 2>&1
echo "guidance rc $?"; date -u
timeout $(left) python3 -m decoding.evals.fid samples $G/samples/*.npz --device cuda > $G/scores.jsonl 2> $OUT/fid-guidance.log
echo "fid rc $?"; python3 -m decoding.evals.guidance report $G --scores $G/scores.jsonl > $OUT/guidance_table.md 2>&1
tar -C $K -cf $OUT/guidance.tar guidance/timings.json guidance/scores.jsonl guidance/results.json guidance/table.md
date -u
if [ ! -f $K/w/dc_small.safetensors ]; then timeout $(left) python3 benchmarks/solver_dc.py --model fashion-small --save --spacing logsnr_trunc --variants final --search-samples 64 --device cuda > $OUT/dc-small.log 2>&1; cp models/fashion-small/dc_solver_ratios.safetensors $OUT/; fi
for s in 0 1; do timeout $(left) python3 benchmarks/solver_fid_table.py generate --model fashion-small --solvers dc_solver unipc_bh2 --n 10000 --batch 2500 --dtype bfloat16 --device cuda --fid --seed $s --out $K/dcs$s > $OUT/dcs$s.log 2>&1; cat $K/dcs$s/results.jsonl > $OUT/dc_small_fid_seed$s.jsonl; done
date -u; cat $OUT/guidance_table.md; tail -n 2 $OUT/*.log
