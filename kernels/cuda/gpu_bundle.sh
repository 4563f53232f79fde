# Sourced by run_gpu_job.sh and run_gpu_eval.sh on a GPU machine: makes the results folder ($OUT,
# else build-gpu-bundle/results) and its log NAME.log, unpacks the bundle carried from a CUDA build
# machine (scripts/pack-gpu-bundle) into /tmp/qshard-gpu-NAME and points the dynamic loader at its
# libraries and at this machine's CUDA ones. Sets results, log, q (the program), plugin, data and
# work. Exits 2 when the bundle is missing or a library is not found (the log says which).
# Usage: source kernels/cuda/gpu_bundle.sh NAME
results="${OUT:-build-gpu-bundle/results}"
mkdir -p "$results"
log="$results/$1.log"
: >"$log"
bundle="${QSHARD_BUNDLE:-build-gpu-bundle/qshard-gpu.tar.xz}"
if [[ ! -f "$bundle" ]]; then
  echo "gpu_bundle: no $bundle (make it here with scripts/pack-gpu-bundle and carry build-gpu-bundle)" | tee -a "$log"
  exit 2
fi
work="/tmp/qshard-gpu-$1"
rm -rf "$work"
mkdir -p "$work"
tar -xJf "$bundle" -C "$work"
q="$work/bin/qshard"
plugin="$work/bin/libqshard_cuda_plugin.so"  # what --device cuda loads; it brings the CUDA libraries
data="$work/data"
echo "bundle: $(cat "$work/commit.txt")" | tee -a "$log"

# The carried libraries first, then wherever this machine keeps the CUDA ones the bundle names.
library_path="$work/lib"
for dir in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [[ -d $dir ]] && library_path+=":$dir"; done
export LD_LIBRARY_PATH="$library_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing() { ldd "$q" "$plugin" | awk '/not found/ {print $1}' | sort -u; }
for soname in $(missing); do
  if [[ -f "$work/lib/fallback/$soname" ]]; then
    LD_LIBRARY_PATH+=":$work/lib/fallback"
  else
    found="$(find /usr/local /opt /usr/lib -name "$soname" 2>/dev/null | head -n 1)"
    [[ -n $found ]] && LD_LIBRARY_PATH+=":$(dirname "$found")"
  fi
done
{ echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldd "$q" "$plugin"; } >>"$log"
if [[ -n "$(missing)" ]]; then
  echo "gpu_bundle: this machine lacks $(missing | tr '\n' ' ')(the bundle needs: $(tr '\n' ' ' <"$work/cuda-libs.txt"))" | tee -a "$log"
  exit 2
fi
