"""The compose engine: compose.yaml's services (one socket, two sockets, two nodes over ssh) run the image's own
launcher (`python -m xeontl reproduce`, native in the container); what they read from this host is written here, from
the same plans `invoke reproduce` makes: their CPU sets, the user ids, the results and keys dirs (`invoke
compose-env`). docker compose (v2) or docker-compose (v1) runs them; nothing here starts a container."""

from __future__ import annotations

import os
from pathlib import Path

from xeontl.common import records
from xeontl.common.errors import UserError
from xeontl.launch.options import DEFAULT_IMAGE
from xeontl.placement import plan as planlib
from xeontl.placement import topology
from xeontl.placement.topology import cpulist
from xeontl.supply import dockerapi

COMPOSE_ENV_HEADER = "# written by `invoke compose-env` from this host's plans; rewritten by it, not by hand\n"


def write_env(out: Path, env: dict[str, str]) -> str:
    """Write compose's variables to `out`, replacing only a file this task wrote (a user's own .env is kept)."""
    # read as a record is (a regular file, bounded: --output /dev/zero is refused, not read forever)
    header = COMPOSE_ENV_HEADER.encode()
    if os.path.lexists(out) and not records.read_bytes(out, "--output", 1 << 20).startswith(header):
        raise UserError(f"{out} exists and was not written by invoke compose-env: move it, or give --output another "
                        f"path (then docker compose --env-file PATH); nothing was overwritten")
    for k, v in env.items():  # a line per variable: a value with a line break would write another variable
        if "\n" in v or "\r" in v or any(ord(c) < 0x20 or c == "\x7f" for c in v):
            raise UserError(f"{k}={v!r}: a value with a control character cannot go into {out}; nothing was written")
    text = "".join(f"{k}={v}\n" for k, v in env.items())
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(COMPOSE_ENV_HEADER + text)
    os.replace(tmp, out)
    return text


def env(results_dir: Path, image: str = DEFAULT_IMAGE, profile: str = "demo",
        keys_dir: Path = Path("keys")) -> dict[str, str]:
    """The values compose.yaml reads, from the same plans `invoke reproduce` makes for this host."""
    topo = topology.live()
    one = planlib.make_plan(topo, 1)
    two = planlib.make_plan(topo, 2, emulate="auto")
    uid, gid = dockerapi.user_ids()
    from xeontl.records.claims import REFERENCE_DIR

    return {"XEONTL_IMAGE": image, "XEONTL_PROFILE": profile, "XEONTL_RESULTS": str(results_dir.resolve()),
            # the committed references, mounted read-only (compose.yaml): over the results dir's own when the results
            # dir is the checkout's, else out of its way
            "XEONTL_REFERENCE": str(REFERENCE_DIR),
            "XEONTL_REFERENCE_AT": "/results/reference" if results_dir.resolve() == REFERENCE_DIR.parent.resolve()
            else "/opt/xeontl/reference",
            "XEONTL_UID": str(uid), "XEONTL_GID": str(gid),
            "XEONTL_CPUSET_1S": cpulist(one.cpus), "XEONTL_CPUSET_2S": cpulist(two.cpus),
            # two "hosts" on one machine: each container gets one socket (or emulated socket) of the 2-socket plan
            "XEONTL_CPUSET_NODE1": cpulist(two.workers[0].cpus), "XEONTL_CPUSET_NODE2": cpulist(two.workers[1].cpus),
            # the key dir of `invoke keys`; each node mounts its own copy (on one machine, the same one)
            "XEONTL_KEYS": str(keys_dir.resolve()), "XEONTL_KEYS_NODE1": str(keys_dir.resolve()),
            "XEONTL_KEYS_NODE2": str(keys_dir.resolve())}
