# Sourced at the start of g20.sh and g21.sh: what this call carried goes into /root/keep (kept while the
# machine stays warm between calls), the slim tree gets back the weights and FID files kept there, the
# Inception network is joined from its two parts once both came, and need() names a missing input.
K=/root/keep; mkdir -p $K/w $OUT
for d in .gpu*/; do  # data (data/), weights (w/NAME.safetensors) and finished students (distill/NAME/) of any carry folder
  [ -d ${d}data ] && cp -r ${d}data $K/
  [ -d ${d}w ] && cp ${d}w/* $K/w/
  [ -d ${d}distill ] && { mkdir -p $K/distill; cp -r ${d}distill/. $K/distill/; }
done
[ -f .gpuA/incA ] && cp .gpuA/incA $K/
[ -f .gpuB/incB ] && { cp .gpuB/incB $K/; cp .gpuB/fashion_mnist_train.safetensors $K/; }
[ -f $K/incA ] && [ -f $K/incB ] && [ ! -f $K/inception.pt ] && cat $K/incA $K/incB > $K/inception.pt
for f in $K/w/*.safetensors; do  # w/NAME.safetensors is the weights of models/NAME (others are skipped)
  m=$(basename $f .safetensors); [ -d models/$m ] && cp $f models/$m/model.safetensors
done
[ -f $K/fashion_mnist_train.safetensors ] && cp $K/fashion_mnist_train.safetensors models/fid/
[ -f $K/inception.pt ] && export DECODING_INCEPTION=$K/inception.pt
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
need() { [ -e "$1" ] || { echo "missing $1: $2"; exit 1; }; }
true
