"""The MPIJob that `invoke render --engine k8s` writes, run for real under the MPI Operator's v2beta1 contract
(tests/mpijob_harness.py: the operator's Secret, hostfile, env and DNS names, the kubelet's cpusets and volumes, with
Docker): two worker pods of one exclusive CPU each, the launcher's own mpirun across them."""

import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from mpijob_harness import OPERATOR_COMMIT, MPIJobHarness

from conftest import invoke, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.docker]
CLAIM, ASSETS = "xeontl-results", "xeontl-assets"


def render(tmp_path, *extra):
    out = tmp_path / "job.yaml"
    r = invoke("render", "--engine", "k8s", "--nodes", "2", "--sockets", "1", "--cores-per-socket", "1", "--profile",
               "smoke", "--memory-per-rank", "2", "--results-claim", CLAIM, "--output", str(out), *extra, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def harness(tmp_path, manifest, assets=None):
    results = tmp_path / "pvc"
    results.mkdir()
    results.chmod(0o777)  # a ReadWriteMany volume the pods' user (uid 1000) writes
    claims = {CLAIM: results, **({ASSETS: assets} if assets else {})}
    return MPIJobHarness(manifest, tmp_path, claims, cpus=[0, 1]), results


def assets_claim(tmp) -> Path:
    """A claim laid out as the rendered config expects (weights/<name>): a small SavedModel with the TF-Hub
    feature-vector contract, made here (the real ResNet cannot be downloaded on this machine)."""
    import tensorflow as tf

    root = tmp / "assets-pvc"
    inp = tf.keras.Input((None, None, 3))
    feats = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(16, 3, strides=2)(inp))
    tf.saved_model.save(tf.keras.Model(inp, feats), str(root / "weights" / "hub"))
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # the pods' user reads it; nobody writes it
    return root


def started_at(container) -> datetime:
    """When the container started (Docker's RFC 3339 time, nanoseconds cut to what datetime holds)."""
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container], capture_output=True,
                         text=True).stdout.strip()
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?Z", out)
    assert m, out
    return datetime.fromisoformat(m[1] + (m[2] or ".0")[:7].ljust(7, "0") + "+00:00")


@pytest.fixture(scope="module")
def late_worker_job(image, tmp_path_factory):
    """Worker 1 comes up 6 s after worker 0 (a node that schedules or pulls late); the manifest's
    launcherCreationPolicy WaitForWorkersReady holds the launcher back until both run. The weights come from a
    read-only assets claim (--assets-claim), as the paper's would."""
    tmp = tmp_path_factory.mktemp("mpijob")
    manifest = render(tmp, "--set", "weights=savedmodel:/anywhere/hub", "--assets-claim", ASSETS)
    h, results = harness(tmp, manifest, assets_claim(tmp))
    try:
        h.start_workers(delays={1: 6})
        h.start_launcher()
        rc, logs = h.wait_launcher()
        started = {p: started_at(p) for p in h.containers}
        env = json.loads(subprocess.run(["docker", "inspect", "-f", "{{json .Config.Env}}", f"{h.name}-launcher"],
                                        capture_output=True, text=True).stdout)
        mounts = {p: json.loads(subprocess.run(["docker", "inspect", "-f", "{{json .Mounts}}", p], capture_output=True,
                                               text=True).stdout) for p in h.containers}
    finally:
        h.delete()
    return {"h": h, "rc": rc, "logs": logs, "results": results, "started": started, "env": env,
            "manifest": manifest, "mounts": mounts, "assets": tmp / "assets-pvc"}


def test_the_pods_read_the_weights_from_the_read_only_assets_claim(late_worker_job):
    from xeontl import model

    run, = list(late_worker_job["results"].iterdir())
    m = json.loads((run / "metrics.json").read_text())
    assert m["weights"]["kind"] == "savedmodel" and m["weights"]["path"] == "/assets/weights/hub"
    # the very files of the claim: the sha256 the pods computed is this host's of the same directory
    here = model.describe_weights({"weights": f"savedmodel:{late_worker_job['assets'] / 'weights' / 'hub'}",
                                   "weights_sha256": ""})
    assert m["weights"]["sha256"] == here["sha256"]
    for pod, mounts in late_worker_job["mounts"].items():
        assets = [mt for mt in mounts if mt["Destination"] == "/assets"]
        assert len(assets) == 1 and assets[0]["RW"] is False, (pod, mounts)


def test_the_mpijob_runs_to_a_complete_result(late_worker_job):
    assert late_worker_job["rc"] == 0, late_worker_job["logs"][-3000:]
    run, = [p for p in late_worker_job["results"].iterdir()]  # renamed whole: no staging dir left
    assert not run.name.startswith(".staging")
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "success" and m["workers"] == 2
    h = late_worker_job["h"]
    # one rank per worker pod, each on the one exclusive CPU of its pod (the plan's +0, by position in the cpuset)
    assert sorted((r["rank"], r["host"], r["affinity"]) for r in m["ranks"]) == [
        (0, f"{h.name}-worker-0", [0]), (1, f"{h.name}-worker-1", [1])]
    for f in ("mllog.txt", "probe.json", "head.weights.h5", "logs/rank-0.log", "logs/rank-1.log", "report.md",
              "config.json", "plan.json", "command.txt", "logs-launcher.txt"):
        assert (run / f).exists(), f
    assert json.loads((run / "probe.json").read_text())["math_path"]["returncode"] == 0


def test_the_launcher_pod_records_the_run_like_every_engine(late_worker_job):
    from xeontl import events, provenance

    h = late_worker_job["h"]
    run, = list(late_worker_job["results"].iterdir())
    prov = json.loads((run / "provenance.json").read_text())
    provenance.validate(prov)
    ex = prov["execution"]
    assert prov["status"] == "success" and ex["mode"] == "kubernetes"
    assert ex["kubernetes"] == {"job": h.name, "namespace": "default", "pod": f"{h.name}-launcher",
                                "node": h.node_of(f"{h.name}-launcher")}
    assert ex["image"]["ref"] == "xeontl:latest" and ex["capabilities_added"] == ["SYS_NICE"]
    assert [a["cpus"] for a in sorted(ex["per_rank_affinity"], key=lambda a: a["rank"])] == ["0", "1"]
    assert ex["inside"]["container_runtime"] == "docker"  # the probe ran in worker-0's container
    assert events.last_status(run / events.FILE) == "success" and events.check(run / events.FILE) == []
    assert "**Status: success**" in (run / "report.md").read_text()


def test_the_launcher_waited_for_the_late_worker(late_worker_job):
    h, started = late_worker_job["h"], late_worker_job["started"]
    assert started[f"{h.name}-launcher"] > started[f"{h.name}-worker-1"] > started[f"{h.name}-worker-0"]


def test_the_job_ran_under_the_operators_contract(late_worker_job):
    h, env = late_worker_job["h"], late_worker_job["env"]
    assert h.hostfile.splitlines() == [f"{h.name}-worker-{i}.{h.name}.default.svc slots=1" for i in (0, 1)]
    for want in ("OMPI_MCA_orte_keep_fqdn_hostnames=true", "OMPI_MCA_orte_default_hostfile=/etc/mpi/hostfile",
                 "OMPI_MCA_plm_rsh_args=-o ConnectionAttempts=10", "OMPI_MCA_orte_set_default_slots=1",
                 "K_MPI_JOB_ROLE=launcher"):
        assert want in env, want
    assert (h.ssh_dir / "id_rsa").read_text().startswith("-----BEGIN EC PRIVATE KEY-----")  # P-521, as generated
    assert OPERATOR_COMMIT.startswith("caa3c47")  # the CRD schema's commit: one contract


@pytest.fixture(scope="module")
def killed_worker_job(image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpijob-kill")
    manifest = render(tmp, "--set", "epochs=200", "--set", "patience=200")
    h, results = harness(tmp, manifest)
    try:
        h.start_workers()
        h.start_launcher()

        def training():
            logs = list(results.glob(".staging-*/logs/rank-1.log"))
            return logs and "epoch 1:" in logs[0].read_text(errors="replace")
        wait_for(training, timeout=600, what="the MPIJob training")
        h.kill(f"{h.name}-worker-1")  # the node of rank 1 is lost
        killed_at = time.monotonic()
        rc, logs = h.wait_launcher(timeout=600)
        ended_after = time.monotonic() - killed_at
    finally:
        h.delete()
    return {"h": h, "rc": rc, "logs": logs, "results": results, "ended_after": ended_after}


def test_a_lost_worker_fails_the_launcher_and_the_run_names_it(killed_worker_job):
    assert killed_worker_job["rc"] != 0, killed_worker_job["logs"][-2000:]
    assert killed_worker_job["ended_after"] < 300, "the launcher hung after its worker was lost"
    run, = list(killed_worker_job["results"].iterdir())
    assert not run.name.startswith(".staging")  # settled, recorded and renamed even so
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "failed"
    h = killed_worker_job["h"]
    assert m["failure"]["rank"] == 1 and m["failure"]["node"].startswith(f"{h.name}-worker-1"), m["failure"]
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["status"] == "failed" and prov["failure"]["rank"] == 1
    assert "**Status: failed**" in (run / "report.md").read_text()
