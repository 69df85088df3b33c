#!/usr/bin/env bash
# Native stack for this host (what `invoke setup` and .ci/run call): Debian packages, the Python packages of
# pyproject.toml, then Horovod compiled against the installed TensorFlow. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
# slurm-wlm, munge, charliecloud-*: the Slurm engine and its test cluster (scripts/slurm-test-cluster.sh);
# charliecloud-builders brings ch-convert (the image as a directory that ch-run starts unprivileged under srun).
for pkg in openmpi-bin libopenmpi-dev numactl cmake g++ debootstrap slurm-wlm munge charliecloud-runtime \
           charliecloud-builders; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The image's exact versions as constraints (pip takes no hashes for an editable install, so they are dropped here).
constraints=$(mktemp); trap 'rm -f "$constraints"' EXIT
sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' requirements/lock.txt > "$constraints"
echo "[setup] pip install -e .[host] (versions from requirements/lock.txt)"
python3 -m pip install -q --disable-pip-version-check -e '.[host]' cloudpickle psutil pyyaml -c "$constraints"
if ! python3 -c "import horovod.tensorflow as h; assert h.mpi_built() and h.gloo_built()" 2>/dev/null; then
  echo "[setup] building horovod 0.28.1 against TensorFlow (~2.5 min)"
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    python3 -m pip install -q --disable-pip-version-check --no-build-isolation --no-cache-dir --no-deps \
    -r requirements/horovod.txt
fi
horovodrun --check-build | grep -E "\[X\] (TensorFlow|MPI|Gloo)"
echo "[setup] done"
