"""Test equipment, not a product engine: plays the Kubeflow MPI Operator's v2beta1 contract AND the kubelet's and the
API server's rules with Docker, so that the MPIJob `invoke render --engine k8s` writes runs here as written, and fails
here where a cluster would refuse or strand it. Users run the manifest on their own cluster.

The operator's side, read in kubeflow/mpi-operator at commit caa3c47fc42eb762635f78045ec0fcd1a89eb038 (v0.8.2, the
commit the vendored CRD schema comes from), pkg/controller/mpi_job_controller.go:
  - an SSH Secret with an ECDSA P-521 key (newSSHAuthSecret), mounted at spec.sshAuthMountPath on every pod as
    id_rsa, id_rsa.pub and authorized_keys (sshVolumeItems), root-owned, default mode 0644 (0600 only at /root/.ssh);
  - a ConfigMap `<job>-config` with `hostfile`, one line per worker `<job>-worker-<i>.<job>.<ns>.svc slots=<slots>`
    (newConfigMap), mounted on the launcher at /etc/mpi (mode 0444);
  - the launcher's env (ompiEnvVars + openMPISlotsEnv + launcherEnvVars + nvidiaDisableEnvVars):
    OMPI_MCA_orte_keep_fqdn_hostnames=true, OMPI_MCA_orte_default_hostfile=/etc/mpi/hostfile,
    OMPI_MCA_plm_rsh_args="-o ConnectionAttempts=10", OMPI_MCA_orte_set_default_slots=<slots>, K_MPI_JOB_ROLE;
    the workers' K_MPI_JOB_ROLE=worker;
  - a headless Service named after the job selecting every pod of the job (newJobService / newService: ClusterIP
    None, *no* publishNotReadyAddresses), so a pod's name `<pod>.<job>.<ns>.svc` exists only once it is Ready;
  - workers are pods `<job>-worker-<i>` (hostname = pod name, subdomain = job); the launcher is a batch Job
    `<job>-launcher` (newLauncherJob: runPolicy's activeDeadlineSeconds and backoffLimit go to it alone), whose pod
    the Job controller names `<job>-launcher-<5 random characters>`, hostname `<job>-launcher` (newLauncherPodTemplate);
  - launcherCreationPolicy WaitForWorkersReady: the launcher Job is created once every worker pod is Ready.

The kubelet's, the scheduler's and the API server's side live in tests/k8s_model/ (kubelet.py, scheduler.py,
admission.py, cluster.py), each held to Kubernetes' own test tables (tests/test_k8s_conformance.py,
tests/fixtures/k8s/):
  - the static CPU manager (pkg/kubelet/cm/cpumanager): takeByTopologyNUMAPacked (whole NUMA nodes/sockets, whole
    cores, then threads), full-pcpus-only (SMTAlignmentError: the pod Failed), never the reserved CPUs; the policy
    does not start without reserved CPUs;
  - the Topology Manager, single-numa-node, merging the CPU Manager's and (when the node has it) the Memory Manager's
    hints: no preferred single-NUMA hint: TopologyAffinityError;
  - the scheduler: taints, nodeSelector/required nodeAffinity, CPU fit (a request no node fits stays Pending), required
    pod (anti-)affinity, PodTopologySpread counting only the nodes its NodeInclusionPolicy counts;
  - Pod Security admission at the namespace's enforce level over every container (policy/check_*.go);
  - claims (ClaimSpec): ReadWriteOnce on a second node waits in ContainerCreating (Multi-Attach); fsGroup applied
    only where the driver's fsGroupPolicy allows (never in-tree NFS);
  - volume ownership (pkg/volume/volume_linux.go SetVolumeOwnership): a pod's fsGroup is applied to a PVC whose root
    does not already belong to it (OnRootMismatch), and added to the container's groups; without one, a root-owned
    0755 volume stays unwritable to a non-root pod;
  - probes (pkg/kubelet/prober): a tcpSocket readiness probe makes the pod Ready.
Each node here is a set of NUMA groups ("sockets") of virtual CPUs, mapped onto this machine's CPUs for Docker.
A node lost is a worker frozen (docker pause) or cut from the network (docker network disconnect): neither closes a
connection, as a real node loss does not.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import yaml
from k8s_model import Refused
from k8s_model.cluster import (
    ClaimSpec,
    Cluster,
    claim_spec,
    control_plane,
    nodes,
    operator_labels,
    plan,
    set_volume_ownership,
    snc2_nodes,
    spr_8480_nodes,
)
from k8s_model.kubelet import Node

from conftest import scaled

__all__ = ["OPERATOR_COMMIT", "ClaimSpec", "Cluster", "MPIJobHarness", "Node", "Refused", "control_plane", "nodes",
           "plan", "set_volume_ownership", "snc2_nodes", "spr_8480_nodes"]

OPERATOR_COMMIT = "caa3c47fc42eb762635f78045ec0fcd1a89eb038"
NAMESPACE = "default"
OMPI_ENV = {"OMPI_MCA_orte_keep_fqdn_hostnames": "true", "OMPI_MCA_orte_default_hostfile": "/etc/mpi/hostfile",
            "OMPI_MCA_plm_rsh_args": "-o ConnectionAttempts=10"}
NVIDIA_DISABLE = {"NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""}


def _docker(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout or scaled(300))
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed: {r.stderr.strip()}")
    return r


def _quantity_gib(q: str) -> str:
    m = re.fullmatch(r"(\d+)Gi", q)
    assert m, f"memory {q!r}: the harness takes whole Gi"
    return f"{m[1]}g"


class MPIJobHarness:
    """One MPIJob (the manifest file written by `invoke render --engine k8s`) on this machine's Docker, on NODES
    (Node), in a namespace enforcing Pod Security at ENFORCE."""

    def __init__(self, manifest: Path, work: Path, claims: dict[str, Path], nodes: list[Node],
                 enforce: str = "baseline", dns_delay: float = 3.0):
        docs = list(yaml.safe_load_all(manifest.read_text()))
        self.config_maps = {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "ConfigMap"}
        self.job = next(d for d in docs if d and d["kind"] == "MPIJob")
        self.name = self.job["metadata"]["name"]
        self.spec = self.job["spec"]
        self.work, self.claims, self.nodes, self.enforce, self.dns_delay = work, claims, nodes, enforce, dns_delay
        self.cluster = Cluster(nodes, enforce, claims)
        work.mkdir(parents=True, exist_ok=True)
        self.pods_net = f"{self.name}-pods-{secrets.token_hex(2)}"
        self.svc_net = f"{self.name}-svc-{secrets.token_hex(2)}"
        self.containers: list[str] = []
        self.placed = self.cluster.placed  # pod -> node, its CPUs (the node's), NUMA node, machine CPUs
        self.slots = self.spec.get("slotsPerWorker", 1)
        self.workers = self.spec["mpiReplicaSpecs"]["Worker"]["replicas"]
        self.launcher_pod = f"{self.name}-launcher-{secrets.token_hex(3)[:5]}"
        self._stop = threading.Event()
        self._ssh_secret()
        self._operator_config()
        _docker("network", "create", self.pods_net)
        _docker("network", "create", self.svc_net)
        self._service = threading.Thread(target=self._endpoints, daemon=True)
        self._service.start()

    # ------------------------------------------------------------------------------------------ what the operator makes
    def fqdn(self, pod: str) -> str:
        return f"{pod}.{self.name}.{NAMESPACE}.svc"

    def _ssh_secret(self) -> None:
        """newSSHAuthSecret + sshVolumeItems: an ECDSA P-521 key in PEM, as three root-owned 0644 files."""
        d = self.work / "ssh-auth"
        d.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "521", "-m", "PEM", "-N", "", "-f", str(d / "key")],
                       check=True)
        (d / "key").rename(d / "id_rsa")
        (d / "key.pub").rename(d / "id_rsa.pub")
        shutil.copy(d / "id_rsa.pub", d / "authorized_keys")
        assert (d / "id_rsa").read_text().startswith("-----BEGIN EC PRIVATE KEY-----")
        for f in d.iterdir():
            f.chmod(0o644 if self.spec.get("sshAuthMountPath") != "/root/.ssh" else 0o600)
        self.ssh_dir = d

    def _operator_config(self) -> None:
        """newConfigMap: the hostfile (and discover_hosts.sh), mounted on the launcher at /etc/mpi."""
        d = self.work / "mpi-job-config"
        d.mkdir()
        hosts = [f"{self.fqdn(f'{self.name}-worker-{i}')} slots={self.slots}" for i in range(self.workers)]
        (d / "hostfile").write_text("".join(h + "\n" for h in hosts))
        (d / "discover_hosts.sh").write_text("#!/bin/sh\n" + "".join(f"echo {h.split()[0]}:{self.slots}\n"
                                                                     for h in hosts))
        (d / "hostfile").chmod(0o444)
        (d / "discover_hosts.sh").chmod(0o555)
        self.hostfile = (d / "hostfile").read_text()
        self.mpi_config = d

    # ------------------------------------------------------------------------------------------ the API server
    def admit(self, role: str, pod_spec: dict, metadata: dict | None = None) -> None:
        """Pod Security admission at the namespace's enforce level (k8s_model.admission, every container)."""
        self.cluster.admit(role, pod_spec, metadata)

    def schedule(self, pod: str, cpus: int, worker: bool, pod_spec: dict | None = None,
                 labels: dict | None = None) -> Node:
        """The scheduler (k8s_model.scheduler): taints, node selection, CPU fit, topology spread over the eligible
        nodes only."""
        return self.cluster.schedule(pod, cpus, worker, pod_spec, labels)

    # ------------------------------------------------------------------------------------------ the kubelet
    def _volumes(self, pod_spec: dict, fs_group: int | None, claims: dict | None = None) -> dict[str, list[str]]:
        """The volumes as mounts; a claim gets the pod's fsGroup only where its driver allows it (ClaimSpec)."""
        out = {}
        for v in pod_spec.get("volumes", []):
            if "persistentVolumeClaim" in v:
                c = (claims or {}).get(v["name"]) or claim_spec(self.claims[v["persistentVolumeClaim"]["claimName"]])
                if fs_group is not None and not v["persistentVolumeClaim"].get("readOnly") and c.applies_fs_group():
                    set_volume_ownership(c.path, fs_group, (pod_spec.get("securityContext") or {}).get(
                        "fsGroupChangePolicy", "Always"))
                out[v["name"]] = ["-v", f"{c.path}:{{path}}"]
            elif "configMap" in v:
                cm = self.config_maps[v["configMap"]["name"]]
                d = self.work / f"configmap-{cm['metadata']['name']}"
                if not d.exists():
                    d.mkdir()
                    for k, text in cm["data"].items():
                        (d / k).write_text(text)
                        (d / k).chmod(0o644)
                out[v["name"]] = ["-v", f"{d}:{{path}}:ro"]
            elif v.get("emptyDir", {}).get("medium") == "Memory":
                out[v["name"]] = ["--shm-size", v["emptyDir"].get("sizeLimit", "64Mi").replace("Gi", "g")]
            else:
                raise AssertionError(f"volume {v['name']}: the harness knows PVC, ConfigMap and Memory emptyDir")
        return out

    def _run_pod(self, role: str, pod: str, hostname: str, extra_env: dict, extra_mounts: list[str],
                 network: str | None = None) -> str:
        full = self.spec["mpiReplicaSpecs"][role]["template"]
        template = full["spec"]
        c = template["containers"][0]
        sec, psec = c.get("securityContext") or {}, template.get("securityContext") or {}
        user, group = sec.get("runAsUser", psec.get("runAsUser")), sec.get("runAsGroup", psec.get("runAsGroup", 0))
        index = int(pod.rsplit("-", 1)[1]) if role == "Worker" else None
        placed = self.cluster.place(role, pod, full, operator_labels(self.name, role, index))
        assert user, "pods run as a non-root user (runAsUser set)"
        limit, machine = c["resources"]["limits"], placed["machine"]
        self.placed[pod] = placed
        fs_group = psec.get("fsGroup")
        volumes = self._volumes(template, fs_group, placed["claims"])
        args = ["run", "-d", "--name", f"{pod}-{secrets.token_hex(2)}", "--hostname", hostname, "--network",
                network or self.pods_net, "--user", f"{user}:{group}", "--cpuset-cpus", ",".join(map(str, machine)),
                "--memory", _quantity_gib(limit["memory"]), "--label", f"xeontl-harness-pod={pod}"]
        if fs_group is not None:
            args += ["--group-add", str(fs_group)]
        caps = sec.get("capabilities", {})
        args += [a for cap in caps.get("drop", []) for a in ("--cap-drop", cap)]
        args += [a for cap in caps.get("add", []) for a in ("--cap-add", cap)]
        if sec.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for m in c.get("volumeMounts", []):
            spec = volumes[m["name"]]
            if spec[0] == "--shm-size":
                args += spec
            else:
                mount = spec[1].format(path=m["mountPath"])
                args += ["-v", mount + (":ro" if m.get("readOnly") and not mount.endswith(":ro") else "")]
        args += ["-v", f"{self.ssh_dir}:{self.spec['sshAuthMountPath']}:ro", *extra_mounts]
        env = {e["name"]: e["value"] if "value" in e else self._field(e["valueFrom"], pod) for e in c.get("env", [])}
        for k, v in {**env, **extra_env}.items():
            args += ["-e", f"{k}={v}"]
        command = [*c.get("command", []), *c.get("args", [])]
        args += ["--entrypoint", command[0], c["image"], *command[1:]]
        cid = _docker(*args).stdout.strip()
        self.containers.append(cid)
        self.placed[pod]["container"] = cid
        return cid

    def node_of(self, pod: str) -> str:
        return self.placed[pod]["node"]

    def _field(self, value_from: dict, pod: str) -> str:
        """The downward API's fieldRef values the kubelet fills in."""
        path = value_from["fieldRef"]["fieldPath"]
        known = {"metadata.name": pod, "metadata.namespace": NAMESPACE, "spec.nodeName": self.node_of(pod)}
        assert path in known, f"fieldRef {path}: the harness knows {sorted(known)}"
        return known[path]

    def _ip(self, pod: str, net: str | None = None) -> str | None:
        r = _docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", self.placed[pod]["container"], check=False)
        import json

        nets = json.loads(r.stdout or "{}") or {}
        return (nets.get(net or self.pods_net) or {}).get("IPAddress") or None

    def ready(self, pod: str) -> bool:
        """The readiness probe (tcpSocket on its port) passes; no probe: ready once the container runs."""
        role = "Worker" if "-worker-" in pod else "Launcher"
        c = self.spec["mpiReplicaSpecs"][role]["template"]["spec"]["containers"][0]
        running = _docker("inspect", "-f", "{{.State.Running}} {{.State.Paused}}", self.placed[pod]["container"],
                          check=False).stdout.split()
        if running != ["true", "false"]:
            return False
        probe = (c.get("readinessProbe") or {}).get("tcpSocket")
        if not probe:
            return True
        ip = self._ip(pod)
        try:
            with socket.create_connection((ip, int(probe["port"])), timeout=1):
                return True
        except (OSError, TypeError):
            return False

    def _endpoints(self) -> None:
        """The endpoints controller and cluster DNS: a pod's name is published once it is Ready, some seconds later
        (dns_delay: the endpoints' propagation and DNS caching), never before."""
        published, since = set(), {}
        while not self._stop.is_set():
            for pod in list(self.placed):
                if pod in published or "container" not in self.placed[pod]:
                    continue
                if self.ready(pod):
                    since.setdefault(pod, time.monotonic())
                    if time.monotonic() - since[pod] >= self.dns_delay:
                        hostname = pod if "-worker-" in pod else f"{self.name}-launcher"
                        _docker("network", "connect", "--alias", self.fqdn(hostname), self.svc_net,
                                self.placed[pod]["container"], check=False)
                        published.add(pod)
            self.published = published
            time.sleep(0.5)

    # ------------------------------------------------------------------------------------------ the job
    def start_workers(self, delays: dict[int, float] | None = None) -> None:
        """Worker pods 0..N-1 (worker i created after delays[i] seconds: a node that schedules or pulls late)."""
        started = time.monotonic()
        for i in sorted(range(self.workers), key=lambda i: (delays or {}).get(i, 0)):
            wait = (delays or {}).get(i, 0) - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
            pod = f"{self.name}-worker-{i}"
            self._run_pod("Worker", pod, pod, {"K_MPI_JOB_ROLE": "worker"}, [])

    def workers_ready(self) -> bool:
        return all(self.ready(f"{self.name}-worker-{i}") for i in range(self.workers))

    def start_launcher(self, extra_env: dict | None = None) -> str:
        """The launcher Job's pod, once every worker is Ready (WaitForWorkersReady): on the Service's network (it
        reaches the workers by their published names), named as the Job controller names a Job's pod."""
        if self.spec.get("launcherCreationPolicy", "AtStartup") == "WaitForWorkersReady":
            deadline = time.monotonic() + scaled(600)
            while not self.workers_ready():
                assert time.monotonic() < deadline, "workers never became ready"
                time.sleep(0.5)
        env = {**OMPI_ENV, "OMPI_MCA_orte_set_default_slots": str(self.slots), "K_MPI_JOB_ROLE": "launcher",
               **NVIDIA_DISABLE, **(extra_env or {})}
        # on the Service's network: it reaches the workers by the names published there
        return self._run_pod("Launcher", self.launcher_pod, f"{self.name}-launcher", env,
                             ["-v", f"{self.mpi_config}:/etc/mpi:ro"], network=self.svc_net)

    def wait_launcher(self, timeout: float | None = None) -> tuple[int, str]:
        cid = self.placed[self.launcher_pod]["container"]
        rc = int(_docker("wait", cid, timeout=timeout or scaled(900)).stdout.strip())
        logs = _docker("logs", cid, check=False)
        return rc, logs.stdout + logs.stderr

    def logs(self, pod: str) -> str:
        r = _docker("logs", self.placed[pod]["container"], check=False)
        return r.stdout + r.stderr

    def freeze(self, pod: str) -> None:
        """A node that stops: its processes stop, its connections stay open (docker pause: the cgroup freezer)."""
        _docker("pause", self.placed[pod]["container"])

    def cut(self, pod: str) -> None:
        """A node cut off the network: its packets go nowhere, nothing is closed."""
        for net in (self.pods_net, self.svc_net):
            _docker("network", "disconnect", "-f", net, self.placed[pod]["container"], check=False)

    def kill(self, pod: str) -> None:
        _docker("kill", self.placed[pod]["container"])

    def delete(self) -> None:
        self._stop.set()
        for c in self.containers:
            _docker("unpause", c, check=False)
            _docker("rm", "-f", c, check=False)
        for net in (self.pods_net, self.svc_net):
            _docker("network", "rm", net, check=False)
