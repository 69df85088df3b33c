"""Test equipment: the kubelet's, the scheduler's and Pod Security admission's rules as the harness
(tests/mpijob_harness.py) plays them, each module held to Kubernetes' own test tables (tests/fixtures/k8s/,
tests/test_k8s_conformance.py)."""


class Refused(AssertionError):
    """What a cluster does with the job instead of running it: an admission error, a pod stuck Pending or in
    ContainerCreating, a kubelet refusing a pod (the MPIJob would wait, or fail, there)."""
