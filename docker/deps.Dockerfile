# xeontl dependency image: Intel-optimized TensorFlow (oneDNN, BF16/AMX) + OpenMPI 4.1 + Horovod 0.28.1, non-root, for
# one stack (image.STACKS): the default (Intel-TF 2.14 on Debian 12's Python 3.11) or the paper's (Intel-TF 2.10.0 on
# Debian 11's Python 3.9). The stack's lock file is the only one in the build context; LOCK names it.
# Built once per lock: its tag is xeontl-deps:<hash of this file and requirements/> (image.deps_hash), so a change to
# the package's sources only rebuilds docker/Dockerfile's few layers on top of it.
# Few steps on purpose: Docker 20.10's legacy builder starts and commits a container for every step, even an ARG, and
# on a fuse-overlayfs machine that took 10-20 s a step (a 26-step version spent ~5 min on steps alone).
#
# Online  : the defaults (debian:bookworm-slim, apt, PyPI; the same sha256-pinned lock files)
# Offline : invoke build --offline (debootstrap bases via `docker import`, the local wheelhouse, PIP_OFFLINE=1)
ARG BASE_IMAGE=debian:bookworm-slim
ARG BUILDER_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------------------- builder
FROM ${BUILDER_IMAGE} AS builder
ARG PIP_OFFLINE=0 LOCK=lock.txt
COPY requirements/ /build/requirements/
COPY docker/wheelhouse/ /wheelhouse/
# One step, one layer: compilers and MPI headers (already in the offline builder base, from apt on a connected
# machine); the venv with every locked package (sha256-pinned; offline, pip looks nowhere but the wheelhouse); then
# Horovod compiled against that TensorFlow (hence no build isolation), with MPI and Gloo, into a wheel: the one Horovod
# build of this bundle. The image installs it, and `invoke setup --native` copies it out for the host (same Debian
# OpenMPI, Python 3.11 and TensorFlow), so Horovod is never compiled twice. oneDNN's standalone C library is for
# check-host's probe on the host (xeontl.onednn), not for the image: it goes (3 x 55 MB: a wheel has no symlinks).
RUN set -e; \
    (command -v g++ && command -v mpicxx && command -v cmake) >/dev/null \
    || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
          python3 python3-venv python3-dev g++ make cmake libopenmpi-dev openmpi-bin && rm -rf /var/lib/apt/lists/*); \
    python3 -m venv /opt/venv; \
    export PATH=/opt/venv/bin:$PATH PIP_DISABLE_PIP_VERSION_CHECK=1; \
    if [ "$PIP_OFFLINE" = 1 ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse; fi; \
    pip install --no-cache-dir --require-hashes -r /build/requirements/$LOCK; \
    pip install --no-cache-dir --no-deps --require-hashes -r /build/requirements/mllog.txt; \
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 \
    HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j2 \
      pip wheel --no-cache-dir --no-build-isolation --no-deps --require-hashes -r /build/requirements/horovod.txt \
        -w /opt/xeontl/wheels; \
    pip install --no-cache-dir --no-deps /opt/xeontl/wheels/horovod-*.whl; \
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +; \
    rm -rf /opt/venv/lib/python3*/site-packages/tensorflow/include; \
    if pip show -q onednn-cpu-gomp 2>/dev/null; then pip uninstall -y -q onednn-cpu-gomp; fi; \
    cp /build/requirements/$LOCK /opt/xeontl/lock.txt

# ---------------------------------------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
# The stack's versions, for the labels below (one ARG step: the legacy builder runs a container for each)
ARG V_TENSORFLOW="intel-tensorflow 2.14.0" V_HOROVOD="0.28.1" V_MPI="OpenMPI 4.1 (Debian 12 bookworm)" \
    V_PYTHON="3.11 (Debian 12 bookworm)"
COPY --from=builder /opt /opt
# One step: runtime packages (in the offline base; apt on a connected machine), the non-root user, /keys (the
# multi-node layout's key dir), /results and /resume (the run dir and an interrupted run: Charliecloud binds onto
# existing directories only), /root passable (the launcher mounts the host paths a run reads, such as the synthetic
# set in ~/.cache/xeontl or TFDS's ~/tensorflow_datasets, at the same paths: for root, under /root, which Debian makes
# 0700, and the image's user was refused), and the build-time check, once per lock: Horovod sees TensorFlow, MPI, Gloo.
RUN set -e; \
    (command -v numactl && command -v mpirun && command -v sshd) >/dev/null \
    || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
          python3 python3-venv openmpi-bin libopenmpi3 numactl procps openssh-client openssh-server ca-certificates \
        && rm -rf /var/lib/apt/lists/*); \
    useradd --create-home --uid 1000 --shell /bin/bash xeontl; \
    install -d -o xeontl -g xeontl /keys; install -d /results /resume; \
    chmod 755 /root; \
    /opt/venv/bin/horovodrun --check-build > /tmp/hvd-check.txt; \
    grep -q "\[X\] TensorFlow" /tmp/hvd-check.txt; grep -q "\[X\] MPI" /tmp/hvd-check.txt; \
    grep -q "\[X\] Gloo" /tmp/hvd-check.txt; rm /tmp/hvd-check.txt; echo "xeontl-check: horovod TF+MPI+Gloo"
# The package itself comes in docker/Dockerfile as source on PYTHONPATH (no pip install: nothing to rebuild or check
# but the import), so everything that does not depend on it is set here, once per lock. All labels in one step (the
# legacy builder makes one step of every `--label`); the deps hash alone comes from `invoke build`.
LABEL org.opencontainers.image.title="xeontl" \
      org.opencontainers.image.description="Distributed transfer learning on 4th Gen Xeon: Intel-TF BF16 + Horovod/OpenMPI" \
      io.xeontl.versions.tensorflow="${V_TENSORFLOW}" \
      io.xeontl.versions.horovod="${V_HOROVOD}" \
      io.xeontl.versions.mpi="${V_MPI}" \
      io.xeontl.versions.python="${V_PYTHON}"
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    XEONTL_LOCK_FILE=/opt/xeontl/lock.txt TF_CPP_MIN_LOG_LEVEL=1 PYTHONPATH=/opt/xeontl/src
USER xeontl
WORKDIR /home/xeontl
ENTRYPOINT ["xeontl-entrypoint"]
CMD ["python", "-m", "xeontl", "--help"]
