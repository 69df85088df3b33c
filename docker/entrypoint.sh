#!/bin/sh
# xeontl image entrypoint.
#   <command...>            run it (the launcher's plan: numactl ... / horovodrun ... / mpirun ...)
#   node <command...>       multi-node layouts: start a non-root sshd on port 2222 so the launching node's
#                           horovodrun/mpirun can start ranks here, then run <command...> (or wait if none).
# Keys: $XEONTL_AUTHORIZED_KEYS when set (Kubernetes: the MPI Operator's Secret at sshAuthMountPath), else /keys
# (compose: a key dir made once by `invoke keys` and copied to every host; nothing is shared between hosts). The ssh
# client side (port 2222, which key) is /etc/ssh/ssh_config.d/xeontl.conf.
set -eu
[ -n "${HOME:-}" ] && [ -w "${HOME}" ] || export HOME=/tmp

if [ "${1:-}" = "node" ]; then
  shift
  authorized=${XEONTL_AUTHORIZED_KEYS:-/keys/id_ed25519.pub}
  [ -r "$authorized" ] || {
    echo "xeontl: no readable $authorized for uid $(id -u): run \`invoke keys\` and mount the key dir at /keys" \
         "(compose.yaml), or set XEONTL_AUTHORIZED_KEYS" >&2; exit 1; }
  if [ -z "${XEONTL_AUTHORIZED_KEYS:-}" ] && [ ! -r /keys/id_ed25519 ]; then
    echo "xeontl: /keys/id_ed25519 is not readable by uid $(id -u): the key dir must be readable by the image's user" >&2
    exit 1
  fi
  mkdir -p /tmp/sshd
  ssh-keygen -q -t ed25519 -N "" -f /tmp/sshd/host_key
  cat > /tmp/sshd/sshd_config <<CFG
Port 2222
HostKey /tmp/sshd/host_key
PidFile /tmp/sshd/sshd.pid
AuthorizedKeysFile $authorized
StrictModes no
PasswordAuthentication no
UsePAM no
PermitUserEnvironment no
AcceptEnv OMPI_* HOROVOD_* KMP_* OMP_* XEONTL_*
CFG
  /usr/sbin/sshd -f /tmp/sshd/sshd_config -E /tmp/sshd/sshd.log
  # The launching node waits until the other nodes accept ssh (horovodrun checks them once, at start).
  for host in ${XEONTL_WAIT_FOR_HOSTS:-}; do
    for _ in $(seq 60); do ssh -o BatchMode=yes -o ConnectTimeout=2 "$host" true 2>/dev/null && break; sleep 1; done
    ssh -o BatchMode=yes -o ConnectTimeout=2 "$host" true || { echo "xeontl: $host does not accept ssh" >&2; exit 1; }
  done
  if [ $# -eq 0 ]; then exec sleep infinity; fi
fi
exec "$@"
