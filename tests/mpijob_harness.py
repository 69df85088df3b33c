"""Test equipment, not a product engine: plays the Kubeflow MPI Operator's v2beta1 contract with Docker, so the MPIJob
that `invoke render --engine k8s` writes runs here as written. Users run the manifest on their own cluster.

The contract, read in kubeflow/mpi-operator at commit caa3c47fc42eb762635f78045ec0fcd1a89eb038 (v0.8.2, the commit
the vendored CRD schema comes from), file pkg/controller/mpi_job_controller.go:
  - an SSH Secret with an ECDSA P-521 key (newSSHAuthSecret), mounted at spec.sshAuthMountPath on every pod as
    id_rsa, id_rsa.pub and authorized_keys (sshVolumeItems), root-owned, default mode 0644 (0600 only at /root/.ssh);
  - a ConfigMap `<job>-config` with `hostfile`, one line per worker `<job>-worker-<i>.<job>.<ns>.svc slots=<slots>`
    (newConfigMap), mounted on the launcher at /etc/mpi (mode 0444);
  - the launcher's env (ompiEnvVars + openMPISlotsEnv + launcherEnvVars + nvidiaDisableEnvVars):
    OMPI_MCA_orte_keep_fqdn_hostnames=true, OMPI_MCA_orte_default_hostfile=/etc/mpi/hostfile,
    OMPI_MCA_plm_rsh_args="-o ConnectionAttempts=10", OMPI_MCA_orte_set_default_slots=<slots>, K_MPI_JOB_ROLE;
    the workers' K_MPI_JOB_ROLE=worker;
  - pod hostname = pod name (`<job>-launcher`, `<job>-worker-<i>`), subdomain = the job's headless Service, so each
    resolves as `<name>.<job>.<ns>.svc` (here: a Docker network with those aliases);
  - launcherCreationPolicy WaitForWorkersReady: the launcher is created once every worker pod is ready.
Kubernetes' side, as a kubelet with the static CPU manager would: each container's integer CPU request as an exclusive
cpuset, memory limit, securityContext (user, capabilities, no privilege escalation), PVCs as a shared host directory,
ConfigMaps as read-only files, a Memory emptyDir at /dev/shm as the shm size.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import yaml

OPERATOR_COMMIT = "caa3c47fc42eb762635f78045ec0fcd1a89eb038"
NAMESPACE = "default"
OMPI_ENV = {"OMPI_MCA_orte_keep_fqdn_hostnames": "true", "OMPI_MCA_orte_default_hostfile": "/etc/mpi/hostfile",
            "OMPI_MCA_plm_rsh_args": "-o ConnectionAttempts=10"}
NVIDIA_DISABLE = {"NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""}


def _docker(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed: {r.stderr.strip()}")
    return r


def _quantity_gib(q: str) -> str:
    m = re.fullmatch(r"(\d+)Gi", q)
    assert m, f"memory {q!r}: the harness takes whole Gi"
    return f"{m[1]}g"


class MPIJobHarness:
    """One MPIJob (the manifest file written by `invoke render --engine k8s`) on this machine's Docker."""

    def __init__(self, manifest: Path, work: Path, claims: dict[str, Path], cpus: list[int]):
        docs = list(yaml.safe_load_all(manifest.read_text()))
        self.config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        self.job = next(d for d in docs if d["kind"] == "MPIJob")
        self.name = self.job["metadata"]["name"]
        self.spec = self.job["spec"]
        self.work, self.claims, self.free_cpus, self.all_cpus = work, claims, list(cpus), list(cpus)
        self.network = f"{self.name}-{secrets.token_hex(3)}"
        self.containers: list[str] = []
        self.slots = self.spec.get("slotsPerWorker", 1)
        self.workers = self.spec["mpiReplicaSpecs"]["Worker"]["replicas"]
        self._ssh_secret()
        self._operator_config()
        _docker("network", "create", self.network)

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

    # ------------------------------------------------------------------------------------------ what the kubelet does
    def _volumes(self, pod_spec: dict) -> dict[str, list[str]]:
        out = {}
        for v in pod_spec.get("volumes", []):
            if "persistentVolumeClaim" in v:
                out[v["name"]] = ["-v", f"{self.claims[v['persistentVolumeClaim']['claimName']]}:{{path}}"]
            elif "configMap" in v:
                cm = self.config_maps[v["configMap"]["name"]]
                d = self.work / f"configmap-{cm['metadata']['name']}"
                if not d.exists():
                    d.mkdir()
                    for k, text in cm["data"].items():
                        (d / k).write_text(text)
                out[v["name"]] = ["-v", f"{d}:{{path}}:ro"]
            elif v.get("emptyDir", {}).get("medium") == "Memory":
                out[v["name"]] = ["--shm-size", v["emptyDir"].get("sizeLimit", "64Mi").replace("Gi", "g")]
            else:
                raise AssertionError(f"volume {v['name']}: the harness knows PVC, ConfigMap and Memory emptyDir")
        return out

    def _cpuset(self, cpu_request: str, exclusive: bool) -> str:
        """Workers: exclusive whole CPUs, as many as requested (the static CPU manager). The launcher: the shared
        pool, which on a 2-core machine whose cores the workers hold is every CPU (it only runs mpirun)."""
        n = int(cpu_request)
        if not exclusive:
            return ",".join(map(str, self.all_cpus))
        assert len(self.free_cpus) >= n, f"not enough CPUs left for a pod requesting {n}: {self.free_cpus}"
        mine, self.free_cpus = self.free_cpus[:n], self.free_cpus[n:]
        return ",".join(map(str, mine))

    def _run_pod(self, role: str, pod: str, extra_env: dict, extra_mounts: list[str], exclusive: bool) -> str:
        template = self.spec["mpiReplicaSpecs"][role]["template"]["spec"]
        c = template["containers"][0]
        sec = c.get("securityContext", {})
        assert sec.get("runAsNonRoot") and sec.get("runAsUser"), "pods run as a non-root user"
        caps = sec.get("capabilities", {})
        volumes = self._volumes(template)
        args = ["run", "-d", "--name", pod, "--hostname", pod, "--network", self.network,
                "--network-alias", self.fqdn(pod), "--user", f"{sec['runAsUser']}:{sec.get('runAsGroup', 0)}",
                "--cpuset-cpus", self._cpuset(c["resources"]["requests"]["cpu"], exclusive),
                "--memory", _quantity_gib(c["resources"]["limits"]["memory"])]
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
        _docker(*args)
        self.containers.append(pod)
        return pod

    def node_of(self, pod: str) -> str:
        """The node a pod was scheduled on: one per pod here (the workers' anti-affinity asks for that)."""
        return f"node-{pod}"

    def _field(self, value_from: dict, pod: str) -> str:
        """The downward API's fieldRef values the kubelet fills in."""
        path = value_from["fieldRef"]["fieldPath"]
        known = {"metadata.name": pod, "metadata.namespace": NAMESPACE, "spec.nodeName": self.node_of(pod)}
        assert path in known, f"fieldRef {path}: the harness knows {sorted(known)}"
        return known[path]

    # ------------------------------------------------------------------------------------------ the job
    def start_workers(self, delays: dict[int, float] | None = None) -> None:
        """Worker pods 0..N-1 (worker i created after delays[i] seconds: a node that pulls or schedules late)."""
        started = time.monotonic()
        for i in sorted(range(self.workers), key=lambda i: (delays or {}).get(i, 0)):
            wait = (delays or {}).get(i, 0) - (time.monotonic() - started)
            if wait > 0:
                time.sleep(wait)
            self._run_pod("Worker", f"{self.name}-worker-{i}", {"K_MPI_JOB_ROLE": "worker"}, [], exclusive=True)

    def workers_ready(self) -> bool:
        """A pod with no readiness probe is ready once its container runs."""
        for i in range(self.workers):
            r = _docker("inspect", "-f", "{{.State.Running}}", f"{self.name}-worker-{i}", check=False)
            if r.stdout.strip() != "true":
                return False
        return True

    def start_launcher(self) -> str:
        policy = self.spec.get("launcherCreationPolicy", "AtStartup")
        if policy == "WaitForWorkersReady":
            deadline = time.monotonic() + 600
            while not self.workers_ready():
                assert time.monotonic() < deadline, "workers never became ready"
                time.sleep(0.5)
        env = {**OMPI_ENV, "OMPI_MCA_orte_set_default_slots": str(self.slots), "K_MPI_JOB_ROLE": "launcher",
               **NVIDIA_DISABLE}
        return self._run_pod("Launcher", f"{self.name}-launcher", env, ["-v", f"{self.mpi_config}:/etc/mpi:ro"],
                             exclusive=False)

    def wait_launcher(self, timeout: int = 900) -> tuple[int, str]:
        pod = f"{self.name}-launcher"
        rc = int(_docker("wait", pod, timeout=timeout).stdout.strip())
        logs = _docker("logs", pod, check=False)
        return rc, logs.stdout + logs.stderr

    def logs(self, pod: str) -> str:
        r = _docker("logs", pod, check=False)
        return r.stdout + r.stderr

    def kill(self, pod: str) -> None:
        _docker("kill", pod)

    def delete(self) -> None:
        for c in self.containers:
            _docker("rm", "-f", c, check=False)
        _docker("network", "rm", self.network, check=False)
