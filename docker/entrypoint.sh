#!/bin/sh
# xeontl image entrypoint.
#   <command...>            run it (the launcher's plan: numactl ... / horovodrun ...)
#   node <command...>       multi-node layout (compose.yaml): start a non-root sshd on port 2222 so the other
#                           node's horovodrun/mpirun can start ranks here, then run <command...> (or wait if none).
# The keypair is generated at start into the shared /keys volume by whichever node comes first.
set -eu
[ -n "${HOME:-}" ] && [ -w "${HOME}" ] || export HOME=/tmp

if [ "${1:-}" = "node" ]; then
  shift
  # ssh reads ~/.ssh/config from the passwd home directory, whatever $HOME says.
  ssh_home=$(getent passwd "$(id -u)" | cut -d: -f6)
  [ -n "$ssh_home" ] && [ -w "$ssh_home" ] || {
    echo "xeontl: uid $(id -u) has no writable home in /etc/passwd: run the node services as the image's user" >&2; exit 1; }
  mkdir -p "$ssh_home/.ssh" /tmp/sshd
  [ -w /keys ] || { echo "xeontl: /keys is not writable by uid $(id -u): mount the keys volume (compose.yaml)" >&2; exit 1; }
  # First node up creates the cluster key (mkdir is atomic: the other node waits for it).
  if mkdir /keys/.lock 2>/dev/null; then
    [ -f /keys/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -f /keys/id_ed25519
    touch /keys/ready
  fi
  for _ in $(seq 60); do [ -f /keys/ready ] && break; sleep 1; done
  [ -f /keys/ready ] || { echo "xeontl: no cluster key appeared in /keys after 60 s" >&2; exit 1; }
  ssh-keygen -q -t ed25519 -N "" -f /tmp/sshd/host_key
  cat > /tmp/sshd/sshd_config <<CFG
Port 2222
HostKey /tmp/sshd/host_key
PidFile /tmp/sshd/sshd.pid
AuthorizedKeysFile /keys/id_ed25519.pub
StrictModes no
PasswordAuthentication no
UsePAM no
PermitUserEnvironment no
AcceptEnv OMPI_* HOROVOD_* KMP_* OMP_* XEONTL_*
CFG
  cat > "$ssh_home/.ssh/config" <<CFG
Host *
  Port 2222
  IdentityFile /keys/id_ed25519
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CFG
  chmod 600 "$ssh_home/.ssh/config"
  /usr/sbin/sshd -f /tmp/sshd/sshd_config -E /tmp/sshd/sshd.log
  # The launching node waits until the other nodes accept ssh (horovodrun checks them once, at start).
  for host in ${XEONTL_WAIT_FOR_HOSTS:-}; do
    for _ in $(seq 60); do ssh -o BatchMode=yes -o ConnectTimeout=2 "$host" true 2>/dev/null && break; sleep 1; done
    ssh -o BatchMode=yes -o ConnectTimeout=2 "$host" true || { echo "xeontl: $host does not accept ssh" >&2; exit 1; }
  done
  if [ $# -eq 0 ]; then exec sleep infinity; fi
fi
exec "$@"
