# Issue 20 (Distilled Decoding) on one H100: three calls back to back on the slim tree (docs/perf/dd.md,
# GPU plan; scripts/gpu/pack.sh makes the carry folders):
#   1. carry [.gpuD]  `S=teacher bash scripts/gpu/g20.sh`  keeps the data and weights in /root/keep, trains the AR teacher
#   2. carry [.gpuA]  `S=student bash scripts/gpu/g20.sh`  pairs from the teacher, then the one/two-step student
#   3. carry [.gpuB]  `S=eval bash scripts/gpu/g20.sh`     FID on 10,000 samples per row, images/s at batch 256, grids
# With the teacher shipped (models/fashion-ar, trained on the CPU; scripts/gpu/pack.sh packs its, the tokenizer's and
# the classifier's weights into .gpuJ) the teacher call is skipped: carry [.gpuA, .gpuJ] `S=student ...`, then
# [.gpuB] `S=eval ...`; the pairs and the student come from the shipped teacher.
# Each call returns what it made as a tar in $OUT (teacher, student, grids) with its log. A machine stays warm
# ~30 s after a reply: send the next call at once. If it went back, /root/keep is gone: a later stage says
# what to carry instead (the tar of the stage before, extracted into out/dd/ here: `carry ["out/dd"]`).
# DEV (default cuda) and T_OPTS / P_OPTS / S_OPTS / E_OPTS (extra options of each command) exist for a dry
# run on a CPU at toy size.
set -u
source scripts/gpu/keep.sh; DEV=${DEV:-cuda}; mkdir -p $K/dd
[ -d out/dd ] && cp -r out/dd/. $K/dd/  # a stage's results carried back after the machine went back
# no teacher trained on this machine: the shipped one (its weights came in .gpuJ)
[ ! -d $K/dd/fashion-ar ] && [ -f models/fashion-ar/model.safetensors ] && cp -r models/fashion-ar $K/dd/
need models/fashion-vq/model.safetensors "carry .gpuD (scripts/gpu/pack.sh) in the teacher call (.gpuJ in the student call when the teacher is shipped)"
{ nvidia-smi -L 2>/dev/null; date -u; } | tee $OUT/g20-$S-env.txt
case "${S:?set S=teacher, student or eval}" in
teacher)
  need $K/data/fashion-mnist "carry .gpuD"
  python3 -m decoding train fashion-ar --device $DEV --data $K/data/fashion-mnist --tokenizer models/fashion-vq \
    --tokenizer-name fashion-vq --total-minutes 8 --minutes 8.5 --no-progress --checkpoint $K/dd/ar-ck \
    --out $K/dd/fashion-ar ${T_OPTS:-} > $OUT/teacher.log 2>&1
  echo "teacher rc $?"; tar -C $K/dd -cf $OUT/fashion-ar.tar fashion-ar; tail -n 4 $OUT/teacher.log ;;
student)
  need $K/dd/fashion-ar/model.safetensors "carry .gpuJ (the shipped teacher), or, when the machine that trained it went back, extract fashion-ar.tar into out/dd/ and carry out/dd"
  python3 -m decoding.dd.pairs --teacher $K/dd/fashion-ar --out $K/dd/pairs --pairs 262144 --shard-size 8192 \
    --batch-size 4096 --device $DEV --minutes 3 ${P_OPTS:-} > $OUT/pairs.log 2>&1
  echo "pairs rc $?"
  python3 -m decoding train fashion-ar-dd --device $DEV --teacher $K/dd/fashion-ar --pairs $K/dd/pairs \
    --total-minutes 5 --minutes 5.5 --no-progress --checkpoint $K/dd/dd-ck --out $K/dd/fashion-ar-dd ${S_OPTS:-} > $OUT/student.log 2>&1
  echo "student rc $?"; tar -C $K/dd -cf $OUT/fashion-ar-dd.tar fashion-ar-dd; tail -n 2 $OUT/pairs.log; tail -n 4 $OUT/student.log ;;
eval)
  need $K/dd/fashion-ar-dd/model.safetensors "the machine went back: extract both tars into out/dd/ and carry out/dd"
  need "${DECODING_INCEPTION:-}" "carry .gpuA in the student call and .gpuB in this one (the two Inception parts)"
  need models/fid/fashion_mnist_train.safetensors "carry .gpuB"
  rows="teacher teacher-cfg teacher-flow dd-1 dd-2 one-pass"  # vq-recon needs Fashion-MNIST (.gpuD, teacher call)
  [ -d $K/data/fashion-mnist ] && { export DECODING_FASHION_MNIST=$K/data/fashion-mnist; rows="$rows vq-recon"; }
  python3 benchmarks/dd_eval.py --teacher $K/dd/fashion-ar --student $K/dd/fashion-ar-dd --vq models/fashion-vq \
    --rows $rows --n 10000 --batch-size 256 --device $DEV --classifier fashion-classifier --out-dir $K/dd/grids \
    --json $OUT/dd_eval_h100.json ${E_OPTS:-} > $OUT/eval.log 2>&1
  echo "eval rc $?"
  if [ -f models/fashion-ar-dd/model.safetensors ]; then  # the shipped student, when its weights were carried (w/)
    python3 benchmarks/dd_eval.py --teacher $K/dd/fashion-ar --student models/fashion-ar-dd --rows dd-1 dd-2 \
      --n 10000 --batch-size 256 --device $DEV --classifier fashion-classifier --out-dir $K/dd/grids-shipped \
      --json $OUT/dd_eval_h100_shipped.json ${E_OPTS:-} > $OUT/eval-shipped.log 2>&1
    echo "eval (shipped student) rc $?"; tail -n 5 $OUT/eval-shipped.log
  fi
  tar -C $K/dd -cf $OUT/grids.tar grids $(cd $K/dd && ls -d grids-shipped 2>/dev/null); tail -n 12 $OUT/eval.log ;;
*) echo "unknown stage S=$S"; exit 1 ;;
esac
date -u
