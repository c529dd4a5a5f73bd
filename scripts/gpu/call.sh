# Sourced at the start of the issue-23 call scripts (g23.sh, g23b.sh, g23c.sh, g23d.sh): `source scripts/gpu/call.sh NAME D0`
# installs the wheel kit (.whl: xformers, diffusers) into /tmp/site, keeps every log and JSON in R=/root/rNAME
# (tarred into $OUT/NAME.tar at the exit, also when a step fails or the call is cut short), and defines the
# time budget of the call, D seconds (default D0): `left` (seconds left), `cap S` (S or what is left, the smaller)
# and `step NAME RC` (records a finished step in $R/steps.txt).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD LD_LIBRARY_PATH=/tmp/site/nvidia/cuda_runtime/lib:$LD_LIBRARY_PATH \
  || { echo "wheel kit NOT installed (xformers, diffusers missing)"; export PYTHONPATH=$PWD; }
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_FX_GRAPH_CACHE=1
CALL=$1; D=${D:-$2}; R=/root/r${CALL#g}; mkdir -p $R
trap 'tar -C $R -cf $OUT/$CALL.tar . 2>/dev/null' EXIT
left() { l=$((D-SECONDS)); [ $l -gt 1 ] && echo $l || echo 1; }
cap() { a=$(left); [ $a -gt $1 ] && echo $1 || echo $a; }
step() { echo "$1 rc $2 at ${SECONDS}s"; echo "$1 rc $2 at ${SECONDS}s" >> $R/steps.txt; }
