"""`invoke keys`: the ssh key pair of the multi-node layouts (compose's two nodes, --hosts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from xeontl.common.errors import UserError
from xeontl.supply import dockerapi


def make(keys_dir: Path) -> Path:
    """`invoke keys`: the multi-node layouts' ssh key pair, made once and copied to every host (nothing is shared
    between hosts at run time). Readable by the image's user, who runs sshd and ssh in the node containers."""
    key = keys_dir / "id_ed25519"
    if key.exists():
        raise UserError(f"{key} exists: keep it (copy {keys_dir} to the other hosts), or remove it for a new pair")
    if shutil.which("ssh-keygen") is None:
        raise UserError("ssh-keygen is not installed: apt-get install openssh-client")
    keys_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xeontl-nodes", "-f", str(key)], check=True)
    if os.getuid() == 0:
        # the containers' user must read the private key
        dockerapi.chown_tree(keys_dir, dockerapi.IMAGE_UID, dockerapi.IMAGE_UID)
    return keys_dir
