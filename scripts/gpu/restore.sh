# sourced at the start of every call: the shipped weights, data and FID files back into the slim tree
K=/root/keep
for m in fashion-large fashion-small fashion-classifier; do cp $K/w/$m.safetensors models/$m/model.safetensors; done
cp $K/w/adapters.safetensors models/fashion-large-agd/
[ -f $K/w/dc_small.safetensors ] && cp $K/w/dc_small.safetensors models/fashion-small/dc_solver_ratios.safetensors
mkdir -p data && cp $K/data/* data/ 2>/dev/null || true
[ -f $K/fashion_mnist_train.safetensors ] && cp $K/fashion_mnist_train.safetensors models/fid/
[ -f $K/inception.pt ] && export DECODING_INCEPTION=$K/inception.pt
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # keeps a wheel kit already on the path
true
