"""`invoke paper`: the paper's 1-socket and 2-socket runs (FP32 too, and N of each with --repeats), then one claims
table judging this host against the paper and Intel's kit (claims.toml)."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from xeontl.launch import launch, outcome, repeats
from xeontl.launch.options import Options
from xeontl.placement import plan as planlib
from xeontl.placement import topology


def run(opts: Options, fp32: bool = False) -> tuple[int, Path]:
    """`invoke paper`: the paper's 1-socket run, then its 2-socket run (with --fp32 also both in FP32, for "BF16
    accuracy = FP32 accuracy" and Intel's kit's FP32 rows), --repeats N times interleaved with recorded seeds, then
    one claims table judging this host against the paper and the kit (claims.toml). On a host with fewer sockets
    (--emulate-sockets), the 1-socket run uses one emulated socket's cores, so the speedup compares like with like."""
    from xeontl.experiment import config
    from xeontl.records import claims, report

    n = repeats.check(opts.repeats)
    topo = topology.load_file(opts.topology_file) if opts.topology_file else topology.live()
    two = planlib.make_plan(topo, 2, opts.emulate_sockets, opts.cores_per_socket)
    per_socket = two.workers[0].cores if two.emulated else opts.cores_per_socket
    configs = {"1 socket": dataclasses.replace(opts, sockets=1, emulate_sockets=False, cores_per_socket=per_socket),
               "2 sockets": dataclasses.replace(opts, sockets=2)}
    if fp32:
        for name in ("2 sockets", "1 socket"):
            o = configs[name]
            configs[f"{name}, FP32"] = dataclasses.replace(o, overrides={**o.overrides, "precision": "fp32"})
    for o in configs.values():  # a precision this CPU cannot run: one line before the first run, not after it
        launch.require_precision(o, config.resolve(o.profile, o.overrides))
    seeded = {name: repeats.seeded(o, n) for name, o in configs.items()}
    dirs: dict[str, list[Path]] = {name: [] for name in configs}
    rc = 0
    for i in range(n):  # interleaved: the machine's slow phases hit every configuration alike
        for name, runs in seeded.items():
            print(f"xeontl paper: {name} run" + (f" {i + 1}/{n} (seed {runs[i].overrides['seed']})" if n > 1 else ""),
                  flush=True)
            code, run_dir = launch.execute(launch.prepare(dataclasses.replace(runs[i], report=False)))
            dirs[name].append(run_dir)
            rc = rc or code
            if code == outcome.ABORTED_EXIT:  # Ctrl-C: no further runs
                break
        if rc == outcome.ABORTED_EXIT:
            break
    loaded = {k: [claims.load_run(d) for d in ds] for k, ds in dirs.items() if ds}
    rows = claims.judge_repeats(loaded)
    every = [d for ds in dirs.values() for d in ds]
    for i in range(n):  # each run's report pairs it with the other configurations' run of the same round
        round_ = [ds[i] for ds in dirs.values() if i < len(ds)]
        for d in round_:
            report.write(d, [o for o in round_ if o != d])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = opts.results_dir.resolve() / f"paper-{stamp}-{opts.profile}"
    tmp = out.with_name(f".staging-{out.name}")
    tmp.mkdir()
    emulated = " (2 EMULATED sockets: not the paper's hardware)" if two.emulated else ""
    spread = f", {n} runs per configuration (mean ± sd, range; seeds in each run's config.json)" if n > 1 else ""
    text = "\n".join([f"# The paper's claims on this host{emulated}{spread}", "", claims.markdown(rows),
                      *[f"- {k}: " + ", ".join(f"`{d.name}` ({claims.load_run(d)['metrics'].get('status')})"
                                                 for d in ds) for k, ds in dirs.items() if ds], ""])
    (tmp / "claims.md").write_text(text)
    (tmp / "claims.json").write_text(json.dumps({"claims": rows, "runs": {k: [str(d) for d in ds]
                                                                          for k, ds in dirs.items()},
                                                 "repeats": n, "emulated_sockets": two.emulated,
                                                 "all_runs": [str(d) for d in every]}, indent=1, default=str))
    os.replace(tmp, out)
    print(text)
    print(f"xeontl paper: claims in {out / 'claims.md'}")
    return rc, out
