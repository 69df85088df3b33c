#!/usr/bin/env bash
# The host side of xeontl, in a project venv (.venv), never the user's global Python (Debian and Ubuntu refuse global
# pip installs; a host Python 3.12 could not install intel-tensorflow 2.14 at all).
#   (default)  what the quick start needs, which trains in the image: Docker (checked), debootstrap (the offline
#              image build), and .venv with the launcher's light dependencies and the test tools. About 30 s.
#   --native   + the training stack in .venv, for `--native` runs and the tests that train on this host: OpenMPI and
#              numactl (apt), TensorFlow from the lock (from docker/wheelhouse when the offline build made it: nothing
#              downloaded twice), and Horovod as the wheel the deps image compiled (`invoke build --offline` first if
#              there is none): Horovod is compiled once, in the image build. Needs Python 3.11.
#   --slurm    + Slurm, munge and Charliecloud: the Slurm engine and its test cluster (scripts/slurm-test-cluster.sh).
# Idempotent: a second run takes seconds. `invoke setup [--native] [--slurm]` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
native=0; slurm=0
for a in "$@"; do
  case "$a" in
    --native) native=1 ;;
    --slurm) slurm=1 ;;
    *) echo "setup-host.sh: unknown option $a: use --native and/or --slurm" >&2; exit 2 ;;
  esac
done
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
t0=$(date +%s)
phase() { echo "[setup $(( $(date +%s) - t0 ))s] $*"; }

command -v docker >/dev/null || { echo "setup-host.sh: docker is not installed: install Docker Engine first" >&2; exit 2; }
need=()
pkgs=(debootstrap)
# python3-venv: Debian's python3 has no venv module without it.
python3 -c "import ensurepip, venv" 2>/dev/null || pkgs+=(python3-venv)
[ $native = 1 ] && pkgs+=(openmpi-bin libopenmpi-dev numactl)
# charliecloud-runtime brings ch-run, which starts the image unprivileged under srun (the image is unpacked for it
# with docker export: xeontl.slurm.unpack).
[ $slurm = 1 ] && pkgs+=(slurm-wlm munge charliecloud-runtime)
for pkg in "${pkgs[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if [ ${#need[@]} -gt 0 ]; then
  phase "apt-get install ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
  || { echo "setup-host.sh: python3 is $(python3 -V 2>&1): the launcher needs Python >= 3.11" >&2; exit 2; }
[ -x .venv/bin/python ] || { phase "python3 -m venv .venv"; python3 -m venv .venv; }
PY=.venv/bin/python
# The image's exact versions as constraints (pip takes no hashes for an editable install, so they are dropped here).
constraints=$(mktemp); trap 'rm -f "$constraints"' EXIT
sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' requirements/lock.txt > "$constraints"
find_links=(); [ -d docker/wheelhouse ] && [ -n "$(ls docker/wheelhouse)" ] && find_links=(--find-links docker/wheelhouse)
extras=host
if [ $native = 1 ]; then
  $PY -c 'import sys; assert sys.version_info[:2] == (3, 11)' \
    || { echo "setup-host.sh: --native needs Python 3.11 (intel-tensorflow 2.14 and the image's Horovod wheel);" \
              "this is $($PY -V): use the image (the default) or a Python 3.11 venv" >&2; exit 2; }
  extras=host,train
fi
# A stamp keyed by what the install depends on: when none of it changed, the venv is as this script left it and the
# pip resolution (~11 s) and the Horovod import check (~5 s: it imports TensorFlow) are skipped. The package itself is
# an editable install: source changes need no reinstall.
stamp=.venv/.xeontl-setup-${extras/,/-}
key=$(cat requirements/lock.txt pyproject.toml scripts/setup-host.sh | sha256sum | cut -c1-32)-$($PY -V 2>&1 | tr -d ' ')
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  phase "done: .venv is up to date (lock, pyproject and this script unchanged since $(date -r "$stamp" +%F\ %T))"
  exit 0
fi
rm -f "$stamp"
phase "pip install -e .[$extras] into .venv (versions from requirements/lock.txt)"
$PY -m pip install -q --disable-pip-version-check "${find_links[@]}" -e ".[$extras]" -c "$constraints"

if [ $native = 1 ] && ! $PY -c "import horovod.tensorflow as h; assert h.mpi_built() and h.gloo_built()" 2>/dev/null
then
  phase "Horovod: the wheel compiled in the deps image (invoke build --offline makes it if missing)"
  $PY -m invoke build --offline
  wheel=$($PY -c "from pathlib import Path; from xeontl.supply import image; print(image.horovod_wheel(Path('.venv/wheels')))")
  $PY -m pip install -q --disable-pip-version-check --no-deps "$wheel"
  .venv/bin/horovodrun --check-build | grep -E "\[X\] (TensorFlow|MPI|Gloo)"
fi
echo "$key" > "$stamp"
phase "done: use .venv/bin/invoke (or activate .venv)"
