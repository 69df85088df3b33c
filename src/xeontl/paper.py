"""`invoke paper`: the paper's 1-socket run, then its 2-socket run (and an FP32 run), then one claims table judging
this host against the paper (claims.toml)."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from xeontl import launch, outcome, topology
from xeontl import plan as planlib
from xeontl.options import Options


def run(opts: Options, fp32: bool = False) -> tuple[int, Path]:
    """`invoke paper`: the paper's 1-socket run, then its 2-socket run (and an FP32 run with --fp32), then one claims
    table judging this host against the paper (claims.toml). On a host with fewer sockets (--emulate-sockets), the
    1-socket run uses one emulated socket's cores, so the speedup compares like with like."""
    from xeontl import claims, report

    topo = topology.load_file(opts.topology_file) if opts.topology_file else topology.live()
    two = planlib.make_plan(topo, 2, opts.emulate_sockets, opts.cores_per_socket)
    per_socket = two.workers[0].cores if two.emulated else opts.cores_per_socket
    runs = {"1 socket": dataclasses.replace(opts, sockets=1, emulate_sockets=False, cores_per_socket=per_socket),
            "2 sockets": dataclasses.replace(opts, sockets=2)}
    if fp32:
        runs["2 sockets, FP32"] = dataclasses.replace(opts, sockets=2,
                                                      overrides={**opts.overrides, "precision": "fp32"})
    dirs, rc = {}, 0
    for name, o in runs.items():
        print(f"xeontl paper: {name} run", flush=True)
        code, run_dir = launch.execute(launch.prepare(dataclasses.replace(o, report=False)))
        dirs[name] = run_dir
        rc = rc or code
        if code == outcome.ABORTED_EXIT:  # Ctrl-C: no further runs
            break
    loaded = {k: claims.load_run(d) for k, d in dirs.items()}
    rows = claims.judge(loaded.get("1 socket"), loaded.get("2 sockets"), loaded.get("2 sockets, FP32"))
    for d in dirs.values():
        report.write(d, [o for o in dirs.values() if o != d])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = opts.results_dir.resolve() / f"paper-{stamp}-{opts.profile}"
    tmp = out.with_name(f".staging-{out.name}")
    tmp.mkdir()
    emulated = " (2 EMULATED sockets: not the paper's hardware)" if two.emulated else ""
    text = "\n".join([f"# The paper's claims on this host{emulated}", "", claims.markdown(rows),
                      *[f"- {k}: `{d.name}` ({loaded[k]['metrics'].get('status')})" for k, d in dirs.items()], ""])
    (tmp / "claims.md").write_text(text)
    (tmp / "claims.json").write_text(json.dumps({"claims": rows, "runs": {k: str(d) for k, d in dirs.items()},
                                                 "emulated_sockets": two.emulated}, indent=1, default=str))
    os.replace(tmp, out)
    print(text)
    print(f"xeontl paper: claims in {out / 'claims.md'}")
    return rc, out
