# Issue 21 (guided distillation, Meng et al. arXiv 2210.03142) on one H100: three calls back to back on
# the slim tree (docs/perf/distill.md, GPU plan; scripts/gpu/pack.sh makes the carry folders):
#   1. carry [.gpuD, .gpuE]  `S=train bash scripts/gpu/g21.sh`   keeps data and weights in /root/keep; stage 1,
#                                                                then progressive rounds 64 -> 32 -> ... until the call's end
#   2. carry [.gpuA]         `S=rounds bash scripts/gpu/g21.sh`  the remaining rounds down to 1 step
#   3. carry [.gpuB]         `S=eval bash scripts/gpu/g21.sh`    FID (10,000 per row) and class accuracy of the
#                                                                teacher with CFG, the same-step baselines and every student
# The evaluation on a machine that did not train them (the students shipped in models/fashion-large-distill-{stage1,4,2,1};
# scripts/gpu/pack.sh packs .gpuH and .gpuI from them): three calls,
#   carry [.gpuA, .gpuH] `S=store ...`, then [.gpuI] `S=store ...`, then [.gpuB] `S=eval ...` (each <= 64 MiB with the tree).
# Training data: the real Fashion-MNIST images of .gpuD (as the paper noises real images). Every stage
# returns its students as tars in $OUT (stage 1 after call 1; after a rounds call every student it finished, so
# that rounds longer than one call's time go on in a later call or session; the 4-, 2- and 1-step ones are shipped in
# models/fashion-large-distill-*). A machine stays warm ~30 s after a reply: send the
# next call at once; if it went back, extract the returned tars into out/distill/ here and carry out/distill.
# `D=SECONDS` caps a call (default 540); DEV (default cuda), SM (minutes of stage 1, 4.5), TS (the stage-1 student's
# steps, 64), RM (minutes per round, 1.5) and TR_OPTS / RD_OPTS / RT_OPTS (each round's training) / EV_OPTS (extra options) exist for a
# dry run on a CPU at toy size. FROM (default stage1) names the student the rounds go on from: a finished round's student
# (e.g. FROM=steps-4, the shipped 4-step student carried as distill/steps-4) retrains only the rounds after it.
# EV_ROWS replaces the evaluation's teacher scales and baselines (default: all of them).
set -u
source scripts/gpu/keep.sh; R=$K/distill; DEV=${DEV:-cuda}; mkdir -p $R
[ -d out/distill ] && cp -r out/distill/. $R/  # students carried back after the machine went back
left_min() { awk "BEGIN{l=(${D:-540}-$SECONDS)/60; print (l > 0.1 ? l : 0.1)}"; }
rounds() {  # the progressive rounds from the last finished student (finished rounds are skipped)
  python3 -m decoding.train.distill_rounds --teacher $R/${FROM:-stage1} --teacher-steps ${TS:-64} --until 1 --root $R --minutes ${RM:-1.5} \
    --deadline-minutes $(left_min) ${RD_OPTS:-} -- --device $DEV --data $K/data/fashion-mnist --no-progress ${RT_OPTS:-}
}
# the rounds finished before this call: a call returns (tars) only the students it finished itself, every one of them,
# so that longer rounds can span calls and sessions (extract the tars into out/distill/ and carry it on)
finished_rounds() { for d in $R/steps-*; do grep -qs '"finished": true' $d/train_log.json && basename $d; done; }
BEFORE=" $(finished_rounds | tr '\n' ' ') "
new_rounds() { for n in $(finished_rounds); do case "$BEFORE" in *" $n "*) ;; *) tar -C $R -cf $OUT/$n.tar $n ;; esac; done; }
[ "${S:-}" = store ] || need models/fashion-large/model.safetensors "carry .gpuE (scripts/gpu/pack.sh) in the first call (.gpuI for the evaluation)"
{ nvidia-smi -L 2>/dev/null; date -u; } | tee $OUT/g21-$S-env.txt
case "${S:?set S=train, rounds or eval}" in
train)
  need $K/data/fashion-mnist "carry .gpuD"
  [ -f $R/stage1/model.safetensors ] || python3 -m decoding train distill-guided --teacher models/fashion-large \
    --data $K/data/fashion-mnist --device $DEV --minutes ${SM:-4.5} --no-progress --checkpoint $R/stage1-ck --out $R/stage1 \
    ${TR_OPTS:-} > $OUT/stage1.log 2>&1
  echo "stage 1 rc $?"; tar -C $R -cf $OUT/stage1.tar stage1
  rounds > $OUT/rounds-1.log 2>&1; echo "rounds rc $?"; ls $R; new_rounds; tail -n 4 $OUT/stage1.log $OUT/rounds-1.log ;;
store)  # the evaluation on a fresh machine: carry [.gpuA, .gpuH], then [.gpuI] (keep.sh stores both), then S=eval with [.gpuB]
  ls -la $K $K/w $R ;;
rounds)
  need $R/${FROM:-stage1}/model.safetensors "the machine went back: extract stage1.tar into out/distill/ and carry out/distill"
  need $K/data/fashion-mnist "the machine went back: carry .gpuD with out/distill"
  rounds > $OUT/rounds-2.log 2>&1; echo "rounds rc $?"; ls $R
  new_rounds
  tail -n 6 $OUT/rounds-2.log ;;
eval)
  need "${DECODING_INCEPTION:-}" "carry .gpuA in the rounds call and .gpuB in this one (the two Inception parts)"
  need models/fid/fashion_mnist_train.safetensors "carry .gpuB"
  students=$(for s in stage1 steps-8 steps-4 steps-2 steps-1; do [ -d $R/$s ] && echo $R/$s; done)
  [ -z "$students" ] && students="$(for n in stage1 4 2 1; do  # none trained on this machine: the shipped students
    [ -f $K/w/fashion-large-distill-$n.safetensors ] && echo models/fashion-large-distill-$n; done)"
  python3 -m decoding.evals.distill --teacher models/fashion-large --scale 1.5 --students $students \
    ${EV_ROWS:---scales 1 1.5 2 3 --baseline-steps 8 4 2 1} --n 10000 --device $DEV --out $OUT/distill_eval_h100.json ${EV_OPTS:-} > $OUT/eval.log 2>&1
  echo "eval rc $?"; tail -n 25 $OUT/eval.log ;;
*) echo "unknown stage S=$S"; exit 1 ;;
esac
date -u
