"""The verdict corpus: run dirs with exactly one deviation each from the paper's setup, and the verdicts they must get.

Where they come from. tests/fixtures/runs/smoke-2s-zen4/ is a run dir the code wrote: `invoke reproduce --profile
smoke --sockets 2 --emulate-sockets --native` of this branch, on a 2-vCPU AMD EPYC Zen 4 VM (family 25 model 17,
BF16 on avx512_core_bf16; its checkpoints, weights, logs and plots left out; its ranks' allowed_cpus, allowed_mems,
numa_nodes, nodes_with_memory and memory_policy, which the code writes since, added with that host's values);
test_setup's slow test writes such a run again and fails when the records' fields drift from it.
What cannot be re-run here (the paper's 2 x 56-core Xeon 8480+, its data and weights, bare metal, its TensorFlow
release, a Slurm allocation of two nodes) is derived from it by the documented transformations below, each a set of
changes to the records (conftest.derive, which then checks every record as its writer checks it: a value the code
cannot write fails there):

- PAPER[role]: the run as the paper's host would have recorded it: the plan the planner makes for the recorded SPR
  topology (tests/topologies/spr-8480-2s-ht.lscpu, placement.plan.make_plan: what the launcher writes as plan.json),
  the paper profile's resolved config, the data's identity as a TFDS build of the archive records it, TF-Hub-shaped
  weights of the paper's architecture, the ranks on their plan's CPUs, memory nodes and threads, 43 epochs;
- DEVIATIONS: one dimension of the setup changed at a time, on top of PAPER["1s"].
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = HERE / "fixtures" / "runs" / "smoke-2s-zen4"
SPR = HERE / "topologies" / "spr-8480-2s-ht.lscpu"
ARCHIVE = "936d0b95ae0f04f1f7b18a2b7e8c55776c3e887d102f645bcee752d1a6626a32"
CONTENT = "c0" * 32  # the content digest a run on the real data records (none measured yet: see claims.toml)


def _plan(sockets: int, **kw) -> dict:
    from xeontl.placement import plan as planlib
    from xeontl.placement import topology

    return planlib.make_plan(topology.load_file(str(SPR)), sockets, kw.get("emulate", False), 0).to_dict()


def _load(name: str) -> dict:
    return json.loads((BASE / f"{name}.json").read_text())


def _epochs(n: int, seconds: float) -> list[dict]:
    row = _load("metrics")["per_epoch"][-1]
    return [{**row, "epoch": i + 1, "seconds": seconds / n, "train_seconds": seconds / n,
             "elapsed_seconds": seconds / n * (i + 1)} for i in range(n)]


def paper(role: str = "1s", epochs: int = 43, seconds: float | None = None) -> dict:
    """The changes that make the base the paper's run of ROLE (dotted paths, conftest.derive)."""
    from xeontl.experiment import config

    sockets = 2 if role.startswith("2s") else 1
    fp32 = role.endswith("fp32")
    seconds = seconds if seconds is not None else (300.0 if sockets == 1 else 164.0) * (1.75 if fp32 else 1.0)
    plan = _plan(sockets)
    cfg = {**config.resolve("paper", {"precision": "fp32"} if fp32 else {}), "profile": "paper"}
    threads = [{"intra_op": w["intra"], "inter_op": w["inter"], "omp_num_threads": str(w["intra"])}
               for w in plan["workers"]]
    # each rank as the kernel shows it on the paper's bare-metal host: its cpuset's memory nodes (Mems_allowed_list:
    # both), its numactl -m as its memory policy; what its shell was allowed where mpirun ran it through the rank
    # wrapper (2 sockets), nothing where the 1-socket run is one plain numactl process
    ranks = [{"rank": w["rank"], "host": "spr", "controller": "mpi" if sockets > 1 else None, "node": None,
              "affinity": sorted(w["cpus"]), "memory_nodes": "0-1", "threads": threads[i],
              "allowed_cpus": "0-223" if sockets > 1 else None, "allowed_mems": "0-1" if sockets > 1 else None,
              "numa_nodes": {"0": "0-55,112-167", "1": "56-111,168-223"}, "nodes_with_memory": "0-1",
              "memory_policy": {"mode": "bind", "nodes": ",".join(map(str, w["nodes"]))},
              "train_images": 4000 // sockets, "images_per_second": 4000 * epochs / seconds / sockets,
              "peak_rss_mib": 3000.0} for i, w in enumerate(plan["workers"])]
    weights = {"kind": "savedmodel", "architecture": "TF-Slim resnet_v1_50",
               "pretrained": "as saved (TF-Hub feature vector)",
               "topology": "ResNet50 v1.5", "label": "TF-Hub ResNet50 v1.5 feature vector", "sha256": "ab" * 32,
               "batch_norm": "as saved"}
    prov = _load("provenance")
    host = copy.deepcopy(prov["host"])
    host["cpu"].update(model_name="Intel(R) Xeon(R) Platinum 8480+", family="6", model="143")
    host["cpu"]["flags_of_note"].update(amx_bf16=True, amx_tile=True, avx512_bf16=True)
    host["topology"] = {"source": "live", "sockets": 2, "cores_per_socket": [56, 56], "threads_per_core": 2,
                        "numa_nodes": {"0": "0-55,112-167", "1": "56-111,168-223"}, "cpus_without_node": "",
                        "memory_nodes": [0, 1], "usable_cpus": "0-223", "warnings": []}
    inside = {**prov["execution"]["inside"], "in_container": False, "container_runtime": None}
    math, rank_math = kernels(prov["math_path"], fp32)
    for r in ranks:
        r["math_path"] = dict(rank_math)
        r["cpu"] = rank_cpu(host)  # every rank on the paper's host
    changes = {
        **{f"config.{k}": v for k, v in cfg.items()},
        **{f"plan.{k}": v for k, v in plan.items()},
        "metrics.workers": sockets, "metrics.notices": [], "metrics.weights": weights,
        "metrics.precision": {"precision": "fp32", "mechanism": None} if fp32 else
        {"precision": "bf16", "mechanism": "grappler auto_mixed_precision_onednn_bfloat16"},
        "metrics.threads": threads[0], "metrics.ranks": ranks, "metrics.epochs_run": epochs,
        "metrics.train_seconds": seconds, "metrics.per_epoch": _epochs(epochs, seconds),
        "metrics.best_epoch": epochs - 10, "metrics.best_val_accuracy": 0.945, "metrics.final_val_accuracy": 0.944,
        "metrics.stopped_early": True, "metrics.learning_rate": 0.001 * sockets,
        "metrics.dataset": {"name": "colorectal_histology", "source": "tfds", "split": "TFDS's record order",
                            "identity": {"examples_per_class": [625] * 8, "tile_shape": [150, 150, 3],
                                         "content_sha256": CONTENT, "archive_sha256": ARCHIVE,
                                         "archive_checked": "the archive TFDS was prepared from (xeontl-origin.json), "
                                                            "content unchanged since"}},
        "provenance.host": host, "provenance.weights": weights, "provenance.math_path": math,
        "provenance.execution.mode": "native", "provenance.execution.inside": inside,
        "provenance.execution.plan": plan, "provenance.execution.emulated_sockets": False,
        "provenance.software": {**prov["software"], "python": "3.9.2", "tensorflow": "2.10.0",
                                "tensorflow_distribution": {"name": "intel-tensorflow-avx512", "version": "2.10.0"},
                                "stack": "paper"},
    }
    return changes


def rank_cpu(host: dict) -> dict:
    """The CPU a rank on HOST (a provenance host record) records (provenance.rank_cpu)."""
    from xeontl.records.provenance import cpu_summary

    return cpu_summary(host["cpu"], host.get("boot"))


def kernels(recorded: dict, fp32: bool, isa: str | None = None) -> tuple[dict, dict]:
    """The training's oneDNN tally (the fixture's, as rank 0's probe wrote it) as it reads where the convolutions ran
    on ISA (default: AMX for BF16, AVX-512's own kernels for FP32) with BF16 operands or FP32 ones, and a rank's
    summary of it (dispatch.Capture.summary). Its other kinds (softmax, reorders, ...) are the fixture's own."""
    from xeontl.experiment.dispatch import summary_of
    from xeontl.records import onednn

    isa = isa or ("avx512_core" if fp32 else "avx512_core_amx")
    conv = recorded["kinds"]["convolution"]
    n = conv["executions"]
    kinds = {**recorded["kinds"], "convolution": {"executions": n, "bf16": 0 if fp32 else n,
                                                  "kernels": {f"brgconv:{isa}": n}}}
    impls = {k: v for k, v in recorded["implementations"].items() if k not in conv["kernels"]}
    impls[f"brgconv:{isa}"] = n
    isas = sorted({i for k in impls for i in onednn.ISA_NAMES.findall(k)})
    math = {**recorded, "implementations": impls, "kinds": kinds, "isas_dispatched": isas,
            "amx_used": any(i in onednn.AMX for i in isas), "convolutions": n,
            "convolutions_bf16_share": 0.0 if fp32 else 1.0, "convolution_isa": isa,
            "bf16_kernels_seen": any(k["bf16"] for k in kinds.values())}
    return math, summary_of(math)


# One dimension of the setup changed at a time, on top of the paper's 1-socket run: dimension -> (what changes, the
# words of the transformation). The keys are every dimension setup.dimensions() lists but the recipe fields, whose
# transformation is generic (RECIPE_VALUES).
def deviations() -> dict[str, dict]:
    p = paper("1s")
    ranks = p["metrics.ranks"]
    plan2 = _plan(2)
    return {
        "data": {"metrics.dataset": {**p["metrics.dataset"], "identity": {
            **p["metrics.dataset"]["identity"], "examples_per_class": [40] * 8, "archive_sha256": None,
            "archive_checked": None}}},
        "weights": {"metrics.weights": {**p["metrics.weights"], "architecture": "unknown"},
                    "provenance.weights": {**p["metrics.weights"], "architecture": "unknown"}},
        # a run that trained in FP32 on the paper's host: its kernels are AVX-512's own, so its math path differs too
        "precision": {"metrics.precision": {"precision": "fp32", "mechanism": None},
                      "provenance.math_path": kernels(p["provenance.math_path"], True)[0],
                      "metrics.ranks": [{**ranks[0], "math_path": kernels(p["provenance.math_path"], True)[1]}],
                      "_also": ["hardware.math_path"]},
        "resumed": {"metrics.resumed_from": {"epoch": 20, "checkpoint": "checkpoints/epoch-20"}},
        # a node's layout is the paper's 1-socket run's, on two nodes (Slurm -N 2): two workers, necessarily
        "layout.nodes": {"plan.node_count": 2, "plan.total_workers": 2, "metrics.workers": 2,
                         "metrics.ranks": [{**ranks[0], "host": "node-a"},  # node-b: another machine, its boot
                                           {**ranks[0], "rank": 1, "host": "node-b",
                                            "cpu": {**ranks[0]["cpu"], "boot": "b0" * 8}}],
                         "_also": ["layout.workers"]},
        "layout.workers": {"metrics.workers": 2},
        "layout.sockets": {"plan.emulated": True},
        "layout.cores_per_worker": {"plan.workers": [{**p["plan.workers"][0], "cores": 28,
                                                      "cpus": p["plan.workers"][0]["cpus"][:28]
                                                      + p["plan.workers"][0]["cpus"][56:84]}],
                                    "metrics.ranks": [{**ranks[0], "affinity": sorted(
                                        p["plan.workers"][0]["cpus"][:28] + p["plan.workers"][0]["cpus"][56:84])}]},
        "layout.threads_per_worker": {"plan.workers": [{**p["plan.workers"][0], "intra": 54, "inter": 54}],
                                      "metrics.ranks": [{**ranks[0], "threads": {"intra_op": 54, "inter_op": 54,
                                                                                 "omp_num_threads": "54"}}],
                                      "metrics.threads": {"intra_op": 54, "inter_op": 54, "omp_num_threads": "54"}},
        "layout.memory_nodes": {"plan.workers": [{**p["plan.workers"][0], "nodes": [1]}],
                                "metrics.ranks": [{**ranks[0], "memory_policy": {"mode": "bind", "nodes": "1"}}]},
        "hardware.cpu": {"provenance.host.cpu.model_name": "Intel(R) Xeon(R) Platinum 8380"},
        "hardware.topology": {"provenance.host.topology.cores_per_socket": [40, 40]},
        # an SPR-like CPU without AMX: BF16 on AVX512-BF16
        "hardware.math_path": {"provenance.math_path": kernels(p["provenance.math_path"], False, "avx512_core_bf16")[0],
                               "provenance.host.cpu.flags_of_note.amx_bf16": False},
        "software": {"provenance.software.tensorflow_distribution": {"name": "intel-tensorflow", "version": "2.14.0"},
                     "provenance.software.stack": "default"},
        "execution": {"provenance.execution.inside.in_container": True,
                      "provenance.execution.inside.container_runtime": "docker"},
        "health": {"metrics.ranks": [{**ranks[0], "affinity": list(range(224))}]},
        "_plan2": plan2,  # not a dimension: the 2-socket plan, for cases that need it
    }


# What today's code records that the fixture lacks: nothing (it is today's; a fixture written before a field existed
# gets it here, until it is re-made).
TODAY: dict = {}


def recipe_value(key: str):
    """Another valid value of a recipe field than the paper profile's (config's own checks hold it)."""
    from xeontl.experiment import config

    want = config.resolve("paper")[key]
    f = config.FIELDS[key]
    if f.type is bool:
        return not want
    if key.endswith("_split"):
        return "train[:70%]" if key == "train_split" else "train[70%:]"
    if key == "learning_rate":
        return 0.5
    if f.type is int:
        return want + 1
    if f.type is float:
        return round(want / 2 + 0.1, 3)
    others = {"amp": "keras", "feature_norm": "on", "optimizer": "sgd", "lr_scaling": "none", "lr_schedule": "plateau"}
    return others[key]
