"""Who can reach what, who may do what, and how the pods run: the security properties of manifests/.

Each test names one property; each failed on the manifests before issue 14 (open Ray heads, no
NetworkPolicy, MinIO's root keys in every pod, RBAC on KFP's shared pipeline-runner, root
PostgreSQL, an exposed MinIO console, secrets on command lines, example passwords deployable).
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from longrl.launchers.schemas import validation_errors

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
SECRETS = BASE / "secrets"
CRDS = sorted((ROOT / "tests" / "fixtures" / "kuberay-crds").glob("*.yaml"))
UNPINNED = ROOT / "images" / "unpinned-images.yaml"

PLATFORM_NS, JOBS_NS, KFP_NS = "longrl", "longrl-jobs", "kubeflow"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet", "CronJob")


def base_kustomization() -> dict[str, Any]:
    return yaml.safe_load((BASE / "kustomization.yaml").read_text())


def applied_objects() -> list[dict[str, Any]]:
    """What `kubectl apply -k` creates from the base, generated Secrets/ConfigMaps aside."""
    objects = []
    for resource in base_kustomization()["resources"]:
        objects += [doc for doc in yaml.safe_load_all((BASE / resource).read_text()) if doc]
    return objects


def objects_of(kind: str, objects: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [obj for obj in (applied_objects() if objects is None else objects) if obj["kind"] == kind]


def pod_template(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]


def workloads(objects: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [
        obj for obj in (applied_objects() if objects is None else objects) if obj["kind"] in WORKLOAD_KINDS
    ]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def workload_id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# ----- pod hardening ----------------------------------------------------------------------------


def hardening_problems(obj: dict[str, Any]) -> list[str]:
    pod = pod_template(obj)["spec"]
    pod_context = pod.get("securityContext") or {}
    problems = []
    if pod_context.get("runAsNonRoot") is not True:
        problems.append("pod securityContext.runAsNonRoot is not true")
    if pod_context.get("runAsUser") == 0:
        problems.append("pod runs as uid 0")
    if (pod_context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("a Kubernetes API token is mounted (automountServiceAccountToken is not false)")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("shares a host namespace")
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for container in containers(pod):
        name, context = container["name"], container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if (context.get("capabilities") or {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities are not dropped (drop: [ALL])")
        if (context.get("capabilities") or {}).get("add"):
            problems.append(f"{name}: adds capabilities")
        if context.get("runAsUser") == 0:
            problems.append(f"{name}: runs as uid 0")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: the root filesystem is writable")
        elif not any(
            m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in container.get("volumeMounts", [])
        ):
            problems.append(f"{name}: a read-only root filesystem without an emptyDir /tmp")
        resources = container.get("resources") or {}
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(bound) or {}):
                    problems.append(f"{name}: no {resource} {bound[:-1]}")
    return problems


@pytest.mark.parametrize("workload", workloads(), ids=workload_id)
def test_every_pod_is_hardened(workload) -> None:
    assert hardening_problems(workload) == []


def test_the_hardening_check_catches_an_unhardened_pod() -> None:
    bare = {
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }
    problems = hardening_problems(bare)
    for expected in (
        "runAsNonRoot",
        "seccompProfile",
        "allowPrivilegeEscalation",
        "capabilities",
        "root filesystem",
    ):
        assert any(expected in problem for problem in problems), expected


def code_generated_pods() -> dict[str, dict[str, Any]]:
    """The pod templates longrl's code creates in longrl-jobs, as workloads for ``hardening_problems``."""
    from longrl.serving import ClusterVerifierConfig, VerifierConfig, build_verifier_objects

    cluster = rayjob()["spec"]["rayClusterSpec"]
    templates = {
        "ray head": cluster["headGroupSpec"]["template"],
        "ray worker": cluster["workerGroupSpecs"][0]["template"],
        "rayjob submitter": rayjob()["spec"]["submitterPodTemplate"],
    }
    for model in ("Qwen/Qwen2.5-1.5B-Instruct", "s3://longrl/models/judge"):
        deployment, _ = build_verifier_objects(
            VerifierConfig(model=model), ClusterVerifierConfig(namespace=JOBS_NS)
        )
        templates[f"verifier of {model}"] = deployment["spec"]["template"]
    return {
        name: {"kind": "Deployment", "metadata": {"name": name}, "spec": {"template": template}}
        for name, template in templates.items()
    }


@pytest.mark.parametrize(
    "name",
    [
        "ray head",
        "ray worker",
        "rayjob submitter",
        "verifier of Qwen/Qwen2.5-1.5B-Instruct",
        "verifier of s3://longrl/models/judge",
    ],
)
def test_every_pod_longrls_code_creates_is_hardened(name) -> None:
    assert hardening_problems(code_generated_pods()[name]) == []


def test_postgres_runs_as_the_images_postgres_user() -> None:
    (postgres,) = [obj for obj in workloads() if obj["metadata"]["name"] == "mlflow-postgres"]
    context = pod_template(postgres)["spec"]["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (999, 999, 999)


# ----- network ----------------------------------------------------------------------------------


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


class Pod:
    def __init__(
        self, namespace: str, labels: dict[str, str], namespace_labels: dict[str, str] | None = None
    ):
        self.namespace = namespace
        self.labels = labels
        self.namespace_labels = {"kubernetes.io/metadata.name": namespace, **(namespace_labels or {})}


def peer_matches(peer: dict[str, Any], policy_namespace: str, source: Pod) -> bool:
    if "ipBlock" in peer:
        return False  # no pod traffic is matched by address here
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], source.namespace_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return selector_matches(peer.get("podSelector"), source.labels)


def admitted(policies: list[dict[str, Any]], source: Pod, destination: Pod, port: int) -> bool:
    """Whether NetworkPolicies admit a TCP connection from ``source`` to ``destination``:``port``."""
    selecting = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == destination.namespace
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and selector_matches(policy["spec"]["podSelector"], destination.labels)
    ]
    if not selecting:
        return True  # a pod no policy selects is open to everyone
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports):
                continue
            peers = rule.get("from")
            if not peers or any(
                peer_matches(peer, policy["metadata"]["namespace"], source) for peer in peers
            ):
                return True
    return False


def manifest_pod(name: str) -> Pod:
    (workload,) = [obj for obj in workloads() if obj["metadata"]["name"] == name]
    return Pod(workload["metadata"]["namespace"], pod_template(workload)["metadata"]["labels"])


@functools.cache
def rayjob() -> dict[str, Any]:
    from longrl.launchers.kuberay import KubeRayConfig, build_rayjob
    from longrl.train.config import RLStepConfig

    config = RLStepConfig(
        model="s3://longrl/models/base",
        output_dir="s3://longrl-artifacts/pipelines/longrl/run/train-rl-phase/model",
        train_file="s3://longrl-artifacts/pipelines/longrl/run/prepare-data/data/train-phase1.parquet",
        reward="rule",
    )
    return build_rayjob("rl", config, KubeRayConfig(namespace=JOBS_NS), "longrl-rl-x")


def ray_pod(node_type: str) -> Pod:
    """A Ray pod of a RayJob as longrl builds it, with the labels KubeRay adds (they win over the template's)."""
    cluster = rayjob()["spec"]["rayClusterSpec"]
    group = cluster["headGroupSpec"] if node_type == "head" else cluster["workerGroupSpecs"][0]
    kuberay = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": "longrl-rl-x-abcde",
        "ray.io/node-type": node_type,
        "ray.io/group": "headgroup" if node_type == "head" else group["groupName"],
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    return Pod(
        JOBS_NS, {"app.kubernetes.io/name": "kuberay", **group["template"]["metadata"]["labels"], **kuberay}
    )


def submitter_pod() -> Pod:
    """KubeRay's submitter Job pod: the RayJob's submitterPodTemplate labels and the Job controller's."""
    job = rayjob()
    labels = job["spec"]["submitterPodTemplate"]["metadata"]["labels"]
    name = job["metadata"]["name"]
    return Pod(JOBS_NS, {**labels, "batch.kubernetes.io/job-name": name, "job-name": name})


@functools.cache
def verifier_pod() -> Pod:
    from longrl.serving import ClusterVerifierConfig, VerifierConfig, build_verifier_objects

    deployment, _ = build_verifier_objects(
        VerifierConfig(model="m"), ClusterVerifierConfig(namespace=JOBS_NS)
    )
    return Pod(JOBS_NS, deployment["spec"]["template"]["metadata"]["labels"])


def step_pod() -> Pod:
    from pipelines.longrl_pipeline import STEP_POD_LABEL

    kfp = {"pipelines.kubeflow.org/v2_component": "true", "pipeline/runid": "r-1"}
    return Pod(KFP_NS, {**kfp, STEP_POD_LABEL[0]: STEP_POD_LABEL[1]})


PODS = {
    "step": step_pod,
    "another pipeline's step": lambda: Pod(KFP_NS, {"pipelines.kubeflow.org/v2_component": "true"}),
    "a stranger": lambda: Pod("default", {"app": "anything"}),
    "a stranger claiming longrl labels": lambda: Pod("default", {**ray_pod("worker").labels}),
    "ray head": lambda: ray_pod("head"),
    "ray worker": lambda: ray_pod("worker"),
    "rayjob submitter": lambda: submitter_pod(),
    "another job's pod": lambda: Pod(JOBS_NS, {"batch.kubernetes.io/job-name": "other", "job-name": "other"}),
    "kuberay operator": lambda: Pod(
        "kuberay-system",
        {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator"},
    ),
    "verifier": verifier_pod,
    "minio": lambda: manifest_pod("minio"),
    "minio setup": lambda: manifest_pod("minio-setup"),
    "mlflow": lambda: manifest_pod("mlflow"),
    "postgres": lambda: manifest_pod("mlflow-postgres"),
    "a person's notebook": lambda: Pod("team-a", {"app": "notebook"}, {"longrl/mlflow-client": "true"}),
}

REACHABILITY = [
    # the Ray head's ports: dashboard/job API 8265 (no login), client 10001, GCS 6379
    ("a stranger", "ray head", 8265, False),
    ("a stranger", "ray head", 10001, False),
    ("a stranger", "ray head", 6379, False),
    ("a stranger claiming longrl labels", "ray head", 8265, False),
    ("another pipeline's step", "ray head", 8265, False),
    ("step", "ray head", 8265, False),  # steps only talk to the Kubernetes API
    ("verifier", "ray head", 8265, False),
    ("rayjob submitter", "ray head", 8265, True),
    ("rayjob submitter", "ray head", 6379, False),
    ("another job's pod", "ray head", 8265, False),
    ("kuberay operator", "ray head", 8265, True),
    ("kuberay operator", "ray head", 10001, False),
    ("ray worker", "ray head", 6379, True),
    ("ray worker", "ray head", 10001, True),
    ("ray head", "ray worker", 43210, True),
    ("a stranger", "ray worker", 43210, False),
    # MinIO: the S3 API for longrl's pods only; no console
    ("step", "minio", 9000, True),
    ("ray worker", "minio", 9000, True),
    ("mlflow", "minio", 9000, True),
    ("minio setup", "minio", 9000, True),
    ("another pipeline's step", "minio", 9000, False),
    ("a stranger", "minio", 9000, False),
    ("a person's notebook", "minio", 9000, False),
    ("step", "minio", 9001, False),
    # MLflow: longrl's pods and namespaces people label
    ("step", "mlflow", 5000, True),
    ("ray head", "mlflow", 5000, True),
    ("a person's notebook", "mlflow", 5000, True),
    ("a stranger", "mlflow", 5000, False),
    ("verifier", "mlflow", 5000, False),
    # PostgreSQL: MLflow only
    ("mlflow", "postgres", 5432, True),
    ("step", "postgres", 5432, False),
    ("ray worker", "postgres", 5432, False),
    ("minio", "postgres", 5432, False),
    # the verifier: the judge's clients only
    ("ray worker", "verifier", 8000, True),
    ("step", "verifier", 8000, True),
    ("a stranger", "verifier", 8000, False),
    ("another pipeline's step", "verifier", 8000, False),
]


@pytest.mark.parametrize(("source", "destination", "port", "expected"), REACHABILITY)
def test_who_can_reach_what(source, destination, port, expected) -> None:
    policies = objects_of("NetworkPolicy")
    assert admitted(policies, PODS[source](), PODS[destination](), port) is expected


def test_every_namespace_longrl_runs_pods_in_denies_ingress_by_default() -> None:
    policies = objects_of("NetworkPolicy")
    namespaces = {obj["metadata"]["name"] for obj in objects_of("Namespace")}
    assert namespaces == {PLATFORM_NS, JOBS_NS}
    assert {w["metadata"]["namespace"] for w in workloads()} <= namespaces
    for namespace in namespaces:
        assert any(
            p["metadata"]["namespace"] == namespace
            and p["spec"]["podSelector"] == {}
            and p["spec"]["policyTypes"] == ["Ingress"]
            and not p["spec"].get("ingress")
            for p in policies
        ), f"{namespace} has no default-deny ingress NetworkPolicy"


def test_policies_name_ports_by_number_and_select_pods_that_exist() -> None:
    """A policy whose selector matches no pod longrl runs protects nothing: catch label drift."""
    pods = [factory() for factory in PODS.values()]
    for policy in objects_of("NetworkPolicy"):
        for rule in policy["spec"].get("ingress") or []:
            assert all(isinstance(p["port"], int) for p in rule.get("ports") or []), policy["metadata"][
                "name"
            ]
        if policy["spec"]["podSelector"]:
            assert any(
                pod.namespace == policy["metadata"]["namespace"]
                and selector_matches(policy["spec"]["podSelector"], pod.labels)
                for pod in pods
            ), f"NetworkPolicy {policy['metadata']['name']} selects no pod longrl runs"


def test_minio_console_is_not_exposed() -> None:
    (minio,) = [obj for obj in workloads() if obj["metadata"]["name"] == "minio"]
    (container,) = pod_template(minio)["spec"]["containers"]
    assert [port["containerPort"] for port in container["ports"]] == [9000]
    assert {"name": "MINIO_BROWSER", "value": "off"} in container["env"]
    assert not any("console" in arg for arg in container.get("args", []))
    for service in objects_of("Service"):
        assert [p["port"] for p in service["spec"]["ports"]] != [9001] and all(
            p["port"] != 9001 for p in service["spec"]["ports"]
        ), service["metadata"]["name"]


# ----- RBAC -------------------------------------------------------------------------------------


def rules_grant(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        and not rule.get("resourceNames")
        for rule in rules
    )


def role(name: str, namespace: str) -> dict[str, Any]:
    (found,) = [
        r
        for r in objects_of("Role")
        if r["metadata"]["name"] == name and r["metadata"]["namespace"] == namespace
    ]
    return found


def role_binding(name: str, namespace: str) -> dict[str, Any]:
    (found,) = [
        b
        for b in objects_of("RoleBinding")
        if b["metadata"]["name"] == name and b["metadata"]["namespace"] == namespace
    ]
    return found


def test_nothing_is_granted_to_kfps_shared_pipeline_runner() -> None:
    for binding in objects_of("RoleBinding") + objects_of("ClusterRoleBinding"):
        assert all(subject["name"] != "pipeline-runner" for subject in binding["subjects"]), binding
    assert not objects_of("ClusterRole") and not objects_of("ClusterRoleBinding")


def test_the_kubeflow_namespace_grants_no_workloads_and_names_its_secrets() -> None:
    for kfp_role in [r for r in objects_of("Role") if r["metadata"]["namespace"] == KFP_NS]:
        for group, resource in (
            ("ray.io", "rayjobs"),
            ("apps", "deployments"),
            ("", "services"),
            ("", "pods"),
        ):
            for verb in ("create", "delete", "patch", "update", "*"):
                assert not rules_grant(kfp_role["rules"], group, resource, verb), (resource, verb)
        for rule in kfp_role["rules"]:
            if {"secrets", "configmaps"} & set(rule["resources"]):
                assert rule.get("resourceNames"), (
                    f"{kfp_role['metadata']['name']}: unnamed {rule['resources']}"
                )


def test_no_role_uses_wildcards_or_reads_secrets_where_jobs_run() -> None:
    for r in objects_of("Role"):
        for rule in r["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], r["metadata"]["name"]
    for r in [r for r in objects_of("Role") if r["metadata"]["namespace"] == JOBS_NS]:
        assert not any(
            {"secrets", "pods/exec", "pods/attach"} & set(rule["resources"]) for rule in r["rules"]
        )


class RecordingApi:
    """A fake Kubernetes API that records each call as the RBAC (group, resource, verb) it needs."""

    PLURALS = {"RayJob": "rayjobs", "Deployment": "deployments", "Service": "services", "Pod": "pods"}

    def __init__(self) -> None:
        from tests.support.fake_kube import FakeKubernetesApi

        self.fake = FakeKubernetesApi()
        self.used: set[tuple[str, str, str]] = set()

    def _record(self, api_version: str, kind: str, verb: str) -> None:
        group = api_version.rpartition("/")[0]
        self.used.add((group, self.PLURALS[kind], verb))

    def create(self, obj):
        self._record(obj["apiVersion"], obj["kind"], "create")
        return self.fake.create(obj)

    def get(self, api_version, kind, namespace, name):
        self._record(api_version, kind, "get")
        return self.fake.get(api_version, kind, namespace, name)

    def delete(self, api_version, kind, namespace, name):
        self._record(api_version, kind, "delete")
        return self.fake.delete(api_version, kind, namespace, name)

    def list_objects(self, api_version, kind, namespace, label_selector):
        self._record(api_version, kind, "list")
        return self.fake.list_objects(api_version, kind, namespace, label_selector)

    def list_pods(self, namespace, label_selector):
        self.used.add(("", "pods", "list"))
        return self.fake.list_pods(namespace, label_selector)

    def stream_pod_log(self, namespace, pod):
        self.used.add(("", "pods/log", "get"))
        return self.fake.stream_pod_log(namespace, pod)


def granted_permissions(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_steps_role_grants_exactly_what_longrls_code_calls(s3_endpoint) -> None:
    """Every Kubernetes call the launcher, the verifier and the exit handler make, and nothing else."""
    from longrl import storage
    from longrl.launchers import kube
    from longrl.launchers.kuberay import KubeRayConfig, KubeRayLauncher
    from longrl.serving import ClusterVerifier, ClusterVerifierConfig, VerifierConfig
    from longrl.train.config import RLStepConfig

    api = RecordingApi()
    output = "s3://longrl/runs/run-1/train-rl-phase/model"
    storage.write_text(f"{output}/result.json", "{}")
    config = RLStepConfig(
        model="s3://longrl/models/base",
        output_dir=output,
        train_file="s3://longrl/data/x.parquet",
        reward="rule",
    )
    name = "longrl-rl-x"
    api.fake.create(
        {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name, "namespace": JOBS_NS}}
    )
    api.fake.status_script[name] = [{"jobStatus": "FAILED"}]  # an earlier attempt: replaced (get, delete)
    original_create = api.fake.create

    def create_and_succeed(obj):
        created = original_create(obj)
        api.fake.status_script[name] = [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
        return created

    api.fake.create = create_and_succeed
    api.fake.pods[f"job-name={name}"] = [{"metadata": {"name": f"{name}-submitter"}}]
    api.fake.logs[f"{name}-submitter"] = ["done"]
    launcher = KubeRayLauncher(
        api, KubeRayConfig(namespace=JOBS_NS, poll_interval_s=0.01), sleep=lambda s: None
    )
    launcher.log = lambda line: None
    launcher.run("rl", config, name)
    api.fake.ready_after_gets["longrl-verifier"] = 0
    verifier = ClusterVerifier(api, VerifierConfig(model="m"), ClusterVerifierConfig(namespace=JOBS_NS))
    verifier.start()
    verifier.stop()
    kube.sweep_run(api, JOBS_NS, "run-1", log=lambda line: None)  # the exit handler's cleanup by run label
    assert granted_permissions(role("longrl-pipeline", JOBS_NS)["rules"]) == api.used


# ----- credentials ------------------------------------------------------------------------------


def secret_sources(pod_spec: dict[str, Any]) -> set[str]:
    names = {v["secret"]["secretName"] for v in pod_spec.get("volumes", []) if "secret" in v}
    for container in containers(pod_spec):
        names |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in (e.get("valueFrom") or {})
        }
    return names


def generated_secrets() -> dict[tuple[str, str], list[str]]:
    """(namespace, Secret) -> the env files it is made from."""
    return {(g["namespace"], g["name"]): g["envs"] for g in base_kustomization()["secretGenerator"]}


def test_minios_root_credentials_reach_only_minio_and_its_setup_job() -> None:
    users = {
        workload_id(w) for w in workloads() if "longrl-minio-root" in secret_sources(pod_template(w)["spec"])
    }
    assert users == {"Deployment/minio", "Job/minio-setup"}
    root_files = generated_secrets()[(PLATFORM_NS, "longrl-minio-root")]
    for (namespace, name), envs in generated_secrets().items():
        if name != "longrl-minio-root":
            assert not set(envs) & set(root_files), (namespace, name)
        else:
            assert namespace == PLATFORM_NS


def test_each_role_gets_its_own_minio_user() -> None:
    secrets = generated_secrets()
    assert secrets[(KFP_NS, "longrl-s3")] == ["secrets/s3-pipeline.env"]
    assert secrets[(JOBS_NS, "longrl-s3")] == ["secrets/s3-training.env"]
    assert secrets[(JOBS_NS, "longrl-s3-verifier")] == ["secrets/s3-verifier.env"]
    assert secrets[(JOBS_NS, "longrl-verifier")] == ["secrets/verifier.env"]
    assert "AWS_ACCESS_KEY_ID" not in (SECRETS / "verifier.env.example").read_text()
    (launcher_config,) = [c for c in objects_of("ConfigMap") if c["metadata"]["name"] == "kfp-launcher"]
    assert launcher_config["metadata"]["namespace"] == KFP_NS
    assert "secretName: longrl-s3" in launcher_config["data"]["providers"]
    (mlflow,) = [w for w in workloads() if w["metadata"]["name"] == "mlflow"]
    assert secret_sources(pod_template(mlflow)["spec"]) == {"longrl-postgres", "longrl-minio-user-mlflow"}


def setup_script() -> str:
    (job,) = [w for w in workloads() if w["metadata"]["name"] == "minio-setup"]
    (container,) = pod_template(job)["spec"]["containers"]
    return " ".join(container.get("command", []) + container.get("args", []))


def test_the_setup_job_creates_a_user_and_policy_per_role() -> None:
    roles = re.search(r"for role in ([a-z ]+); do", setup_script())[1].split()
    assert sorted(roles) == ["mlflow", "pipeline", "training", "verifier"]
    (job,) = [w for w in workloads() if w["metadata"]["name"] == "minio-setup"]
    volumes = {v["name"]: v for v in pod_template(job)["spec"]["volumes"]}
    generator = {g["name"]: g for g in base_kustomization()["configMapGenerator"]}["minio-policies"]
    for name in roles:
        assert volumes[name]["secret"]["secretName"] == f"longrl-minio-user-{name}"
        assert f"minio/policies/longrl-{name}.json" in generator["files"]
        assert (PLATFORM_NS, f"longrl-minio-user-{name}") in generated_secrets()


def policy(name: str) -> dict[str, Any]:
    return json.loads((BASE / "minio" / "policies" / f"longrl-{name}.json").read_text())


def s3_allows(document: dict[str, Any], action: str, resource: str) -> bool:
    """IAM/MinIO evaluation of Allow statements: `*` in actions and resources matches any characters."""

    def matches(statement: dict[str, Any]) -> bool:
        actions, resources = statement["Action"], statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in resources
        )

    statements = document["Statement"]
    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and matches(s) for s in statements)


RUN = "arn:aws:s3:::longrl-artifacts/pipelines/longrl/0f1e2d"
S3_ACCESS = [
    # the training user (Ray pods): read data, models and earlier steps; write only Ray steps' outputs
    ("training", "s3:GetObject", "arn:aws:s3:::longrl/data/docqa.parquet", True),
    ("training", "s3:GetObject", "arn:aws:s3:::longrl/models/base/config.json", True),
    ("training", "s3:GetObject", f"{RUN}/prepare-data/data/train-phase1.parquet", True),
    ("training", "s3:PutObject", f"{RUN}/train-sft/model/model.safetensors", True),
    ("training", "s3:PutObject", f"{RUN}/train-rl-phase-2/model/result.json", True),
    ("training", "s3:ListBucket", "arn:aws:s3:::longrl-artifacts", True),
    ("training", "s3:PutObject", "arn:aws:s3:::longrl/models/base/model.safetensors", False),
    ("training", "s3:DeleteObject", "arn:aws:s3:::longrl/data/docqa.parquet", False),
    ("training", "s3:PutObject", f"{RUN}/prepare-data/data/train-phase1.parquet", False),
    ("training", "s3:PutObject", f"{RUN}/evaluate-model/evaluation/metrics.json", True),
    ("training", "s3:PutObject", f"{RUN}/build-judge/Output/model.safetensors", False),
    ("training", "s3:GetObject", "arn:aws:s3:::mlflow/artifacts/1/model.safetensors", False),
    ("training", "s3:CreateBucket", "arn:aws:s3:::evil", False),
    ("training", "admin:CreateUser", "arn:aws:s3:::*", False),
    # the pipeline's steps: read data and models, read/write the pipeline's artifacts
    ("pipeline", "s3:GetObject", "arn:aws:s3:::longrl/models/base/config.json", True),
    ("pipeline", "s3:PutObject", f"{RUN}/prepare-data/data/train-phase1.parquet", True),
    ("pipeline", "s3:AbortMultipartUpload", f"{RUN}/evaluate-model/evaluation/predictions.parquet", True),
    ("pipeline", "s3:PutObject", "arn:aws:s3:::longrl/models/base/model.safetensors", False),
    ("pipeline", "s3:PutObject", "arn:aws:s3:::longrl/data/docqa.parquet", False),
    ("pipeline", "s3:GetObject", "arn:aws:s3:::mlflow/artifacts/1/model.safetensors", False),
    # MLflow's server: its artifact bucket only
    ("mlflow", "s3:PutObject", "arn:aws:s3:::mlflow/artifacts/1/abc/artifacts/model.safetensors", True),
    ("mlflow", "s3:GetObject", "arn:aws:s3:::longrl/data/docqa.parquet", False),
    ("mlflow", "s3:PutObject", f"{RUN}/train-sft/model/model.safetensors", False),
    # the verifier's model loader: read judge models, nothing else
    ("verifier", "s3:GetObject", "arn:aws:s3:::longrl/models/judge/model.safetensors", True),
    ("verifier", "s3:GetObject", f"{RUN}/build-judge/Output/model.safetensors", True),
    ("verifier", "s3:GetObject", "arn:aws:s3:::longrl/data/docqa.parquet", False),
    ("verifier", "s3:GetObject", f"{RUN}/train-sft/model/model.safetensors", False),
    ("verifier", "s3:PutObject", "arn:aws:s3:::longrl/models/judge/model.safetensors", False),
]


@pytest.mark.parametrize(("user", "action", "resource", "expected"), S3_ACCESS)
def test_minio_policies(user, action, resource, expected) -> None:
    assert s3_allows(policy(user), action, resource) is expected


def test_policies_grant_no_wildcard_actions() -> None:
    for name in ("pipeline", "training", "mlflow", "verifier"):
        for statement in policy(name)["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert all(a.startswith("s3:") and "*" not in a for a in actions), (name, actions)
            assert "arn:aws:s3:::*" not in statement["Resource"], name


def pipeline_tasks(compiled: list[dict[str, Any]]) -> set[str]:
    spec = compiled[0]
    tasks = set(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks |= set(component.get("dag", {}).get("tasks", {}))
    return tasks


RAY_STEPS = ("train-sft", "train-rl-phase", "evaluate-model")  # the steps whose RayJobs write outputs


@pytest.mark.parametrize(("user", "writers"), [("training", RAY_STEPS), ("verifier", ())])
def test_policies_match_the_pipelines_task_names(compiled_pipeline, user, writers) -> None:
    """Prefixes in the policies are KFP task names: the Ray steps' outputs, the judge the run builds."""
    tasks = pipeline_tasks(compiled_pipeline)
    assert {"train-sft", "evaluate-model"} <= tasks and any(t.startswith("train-rl-phase") for t in tasks)
    for task in tasks:
        resource = f"{RUN}/{task}/model/x"
        assert s3_allows(policy(user), "s3:PutObject", resource) is task.startswith(writers or ("-",)), task
    assert s3_allows(policy("verifier"), "s3:GetObject", f"{RUN}/build-judge/Output/config.json")


# ----- pipeline step pods -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compiled_pipeline(tmp_path_factory) -> list[dict[str, Any]]:
    from pipelines import cli

    path = tmp_path_factory.mktemp("pipeline") / "longrl.yaml"
    cli.compile_pipeline(path)
    return list(yaml.safe_load_all(path.read_text()))


def test_every_pipeline_step_carries_the_label_the_policies_admit(compiled_pipeline) -> None:
    from pipelines.longrl_pipeline import STEP_POD_LABEL

    spec, platform = compiled_pipeline
    executors = set(spec["deploymentSpec"]["executors"])
    configs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in executors:
        labels = configs.get(executor, {}).get("podMetadata", {}).get("labels", {})
        assert labels.get(STEP_POD_LABEL[0]) == STEP_POD_LABEL[1], executor


def test_runs_are_submitted_and_scheduled_as_the_longrl_pipeline_service_account(
    compiled_pipeline, tmp_path
) -> None:
    from pipelines import cli

    from tests.support.kfp_server import serve_kfp

    package = tmp_path / "longrl.yaml"
    package.write_text(yaml.safe_dump_all(compiled_pipeline))
    (subject,) = role_binding("longrl-pipeline", JOBS_NS)["subjects"]
    assert (subject["name"], subject["namespace"]) == (cli.SERVICE_ACCOUNT, KFP_NS)
    with serve_kfp() as (url, kfp):
        assert cli.main(["submit", "--host", url, "--package", str(package)]) == 0
        schedule = ["schedule", "--host", url, "--package", str(package), "--cron", "0 0 3 * * 1"]
        assert cli.main([*schedule, "--service-account", "team-runner"]) == 0
    assert kfp.runs[0]["service_account"] == "longrl-pipeline"
    assert kfp.recurring[0]["service_account"] == "team-runner"


def test_the_codes_default_namespace_is_where_the_manifests_let_the_pipeline_work(compiled_pipeline) -> None:
    """A run with the defaults creates its RayJobs and verifier where the longrl-pipeline Role allows
    it, where the NetworkPolicies cover them and where the Secrets their pods name are."""
    from longrl.launchers.kuberay import KubeRayConfig
    from longrl.serving import ClusterVerifierConfig
    from longrl.steps import Placement

    (binding,) = [b for b in objects_of("RoleBinding") if b["roleRef"]["name"] == "longrl-pipeline"]
    namespace = binding["metadata"]["namespace"]
    assert ("longrl-pipeline", namespace) in {
        (r["metadata"]["name"], r["metadata"]["namespace"]) for r in objects_of("Role")
    }
    policies = {
        p["metadata"]["name"] for p in objects_of("NetworkPolicy") if p["metadata"]["namespace"] == namespace
    }
    assert {"default-deny-ingress", "ray-cluster-internal", "ray-head-job-api", "verifier-http"} <= policies
    kuberay, verifier = KubeRayConfig(), ClusterVerifierConfig()
    needed = {
        *kuberay.secret_env,
        *kuberay.secret_keys.values(),
        verifier.api_key_secret,
        verifier.model_secret,
    }
    assert needed <= {name for secret_namespace, name in generated_secrets() if secret_namespace == namespace}
    spec, _ = compiled_pipeline
    pipeline_default = spec["root"]["inputDefinitions"]["parameters"]["namespace"]["defaultValue"]
    assert {kuberay.namespace, verifier.namespace, Placement().namespace, pipeline_default} == {namespace}
    for template in sorted((BASE / "templates").glob("*.yaml")):
        for obj in yaml.safe_load_all(template.read_text()):
            assert obj["metadata"]["namespace"] == namespace, template.name


def test_the_judges_key_reaches_the_steps_from_a_secret_of_their_namespace_holding_only_it() -> None:
    from pipelines.longrl_pipeline import JUDGE_KEY_ENV, JUDGE_KEY_SECRET

    (subject,) = role_binding("longrl-pipeline", JOBS_NS)["subjects"]  # where the steps run
    assert generated_secrets()[(subject["namespace"], JUDGE_KEY_SECRET)] == ["secrets/judge-client.env"]
    # No HF token, no S3 key: other pipelines' runners may read this namespace's Secrets.
    example = (SECRETS / "judge-client.env.example").read_text()
    assert re.findall(r"^#?\s*([A-Z_]+)=", example, re.MULTILINE) == [JUDGE_KEY_ENV]


# ----- secrets on command lines, images ---------------------------------------------------------

SECRET_REFERENCE = re.compile(r"\$[({]?[A-Z_]*(PASSWORD|SECRET|TOKEN|API_KEY)[A-Z_]*")


def test_no_secret_is_put_on_a_command_line() -> None:
    for workload in workloads():
        for container in containers(pod_template(workload)["spec"]):
            words = [*container.get("command", []), *container.get("args", [])]
            assert not [w for w in words if SECRET_REFERENCE.search(w)], (
                f"{workload_id(workload)}/{container['name']}"
            )


def image_references() -> dict[str, str]:
    """Every image the manifests (and the generated templates) and the Dockerfiles name -> where."""
    found = {}
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for match in re.finditer(r"^\s*(?:-\s*)?image:\s*['\"]?([^\s'\"]+)", path.read_text(), re.MULTILINE):
            found.setdefault(match[1], str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "images").glob("*/Dockerfile")):
        for match in re.finditer(r"^FROM\s+(\S+)", path.read_text(), re.MULTILINE):
            found.setdefault(match[1], str(path.relative_to(ROOT)))
    return found


def test_images_are_pinned_by_digest_or_listed_with_a_reason() -> None:
    unpinned = yaml.safe_load(UNPINNED.read_text())
    assert all(isinstance(reason, str) and len(reason) > 20 for reason in unpinned.values())
    references = image_references()
    for reference, where in references.items():
        assert re.fullmatch(r"[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}", reference) or reference in unpinned, (
            f"{where}: {reference} is neither pinned (tag@sha256:...) nor in {UNPINNED.name}"
        )
    stale = set(unpinned) - set(references)
    assert not stale, f"{UNPINNED.name} lists images nothing names: {sorted(stale)}"


# ----- deploying: the secrets check and the rendered overlays ----------------------------------


def load_check_secrets():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_secrets", ROOT / "scripts" / "check-secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def good_value(key: str, index: int) -> str:
    if key in ("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"):
        return f"user-{index}-{key.lower().replace('_', '-')}"
    return f"{index:02d}" + "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8"[:30]


def copy_manifests_with_secrets(target: Path, fill) -> Path:
    """A copy of manifests/ whose env files are the examples, each value passed through ``fill``."""
    shutil.copytree(MANIFESTS, target / "manifests")
    secrets = target / "manifests" / "base" / "secrets"
    for index, example in enumerate(sorted(secrets.glob("*.env.example"))):
        lines = []
        for line in example.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                line = f"{key}={fill(key, value, index)}"
            lines.append(line)
        (secrets / example.name.removesuffix(".example")).write_text("\n".join(lines) + "\n")
    return target / "manifests" / "base" / "kustomization.yaml"


def chosen_secrets(key: str, example_value: str, index: int) -> str:
    secret = load_check_secrets().SECRET_KEY.search(key)
    return (
        good_value(key, index) if secret or key in ("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER") else example_value
    )


def test_check_secrets_refuses_the_examples_and_accepts_chosen_ones(tmp_path) -> None:
    check = load_check_secrets()
    examples = copy_manifests_with_secrets(tmp_path / "examples", lambda key, value, index: value)
    found = check.problems(examples)
    assert any("s3-training.env: AWS_SECRET_ACCESS_KEY still holds the example" in p for p in found)
    assert any("minio-root.env: MINIO_ROOT_PASSWORD still holds the example" in p for p in found)
    assert any("postgres.env: POSTGRES_PASSWORD still holds the example" in p for p in found)
    chosen = copy_manifests_with_secrets(tmp_path / "chosen", chosen_secrets)
    assert check.problems(chosen) == []


@pytest.mark.parametrize(
    ("file", "line", "complaint"),
    [
        ("s3-pipeline.env", "AWS_SECRET_ACCESS_KEY=short", "shorter than 16"),
        ("s3-training.env", "AWS_SECRET_ACCESS_KEY=" + "x" * 41, "longer than MinIO's 40"),
        ("minio-root.env", "MINIO_ROOT_PASSWORD=p@ss/word-that-is-long", "only letters, digits"),
        ("s3-training.env", "AWS_ACCESS_KEY_ID=user-0-minio-root-user", "also the user of"),
        ("verifier.env", "VLLM_API_KEY=change-me-please-0123456789", "example's password"),
        ("postgres.env", "POSTGRES_PASSWORD=", "is not set"),
    ],
)
def test_check_secrets_refuses_unsafe_values(tmp_path, file, line, complaint) -> None:
    check = load_check_secrets()
    kustomization = copy_manifests_with_secrets(tmp_path, chosen_secrets)
    env = kustomization.parent / "secrets" / file
    key = line.partition("=")[0]
    kept = [existing for existing in env.read_text().splitlines() if not existing.startswith(f"{key}=")]
    env.write_text("\n".join([*kept, line]) + "\n")
    if "also the user of" in complaint:  # the root user's name, taken from the root env file
        root = check.read_env(kustomization.parent / "secrets" / "minio-root.env")["MINIO_ROOT_USER"]
        env.write_text(env.read_text().replace(line.partition("=")[2], root))
    assert any(complaint in problem for problem in check.problems(kustomization)), check.problems(
        kustomization
    )


def _set_env(path: Path, key: str, value: str) -> None:
    kept = [line for line in path.read_text().splitlines() if not line.startswith(f"{key}=")]
    path.write_text("\n".join([*kept, f"{key}={value}"]) + "\n")


def test_check_secrets_wants_the_verifiers_key_wherever_a_client_copy_is(tmp_path) -> None:
    check = load_check_secrets()
    kustomization = copy_manifests_with_secrets(tmp_path, chosen_secrets)
    secrets = kustomization.parent / "secrets"
    key = "judge-key-0123456789abcdef"
    _set_env(secrets / "verifier.env", "VLLM_API_KEY", key)
    _set_env(secrets / "verifier.env", "LONGRL_JUDGE_API_KEY", key)
    refused = check.problems(kustomization)
    assert [p for p in refused if "judge-client.env" in p] == [
        f"{secrets / 'judge-client.env'}: LONGRL_JUDGE_API_KEY must be the verifier's VLLM_API_KEY "
        "(its clients would get HTTP 401)"
    ]
    _set_env(secrets / "judge-client.env", "LONGRL_JUDGE_API_KEY", key)  # the same key in two files
    assert check.problems(kustomization) == []
    _set_env(secrets / "judge-client.env", "LONGRL_JUDGE_API_KEY", "another-key-0123456789")
    assert any("judge-client.env: LONGRL_JUDGE_API_KEY must be" in p for p in check.problems(kustomization))
    s3_secret = check.read_env(secrets / "s3-pipeline.env")["AWS_SECRET_ACCESS_KEY"]
    _set_env(secrets / "judge-client.env", "LONGRL_JUDGE_API_KEY", s3_secret)
    assert any("is the same secret as" in p for p in check.problems(kustomization))


def test_check_secrets_names_a_missing_file(tmp_path) -> None:
    check = load_check_secrets()
    kustomization = copy_manifests_with_secrets(tmp_path, chosen_secrets)
    (kustomization.parent / "secrets" / "s3-training.env").unlink()
    assert any(
        "s3-training.env: missing; copy s3-training.env.example" in p for p in check.problems(kustomization)
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_deploy_refuses_example_passwords_and_applies_chosen_ones(tmp_path) -> None:
    fake_kubectl = tmp_path / "kubectl"
    calls = tmp_path / "kubectl-calls"
    fake_kubectl.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake_kubectl.chmod(0o755)

    def deploy(tree: Path) -> subprocess.CompletedProcess:
        shutil.copy(ROOT / "Makefile", tree / "Makefile")
        (tree / "scripts").mkdir()
        shutil.copy(ROOT / "scripts" / "check-secrets.py", tree / "scripts" / "check-secrets.py")
        return subprocess.run(
            ["make", "deploy", f"KUBECTL={fake_kubectl}", f"PYTHON3={sys.executable}", "OVERLAY=local"],
            cwd=tree,
            capture_output=True,
            text=True,
            env={**os.environ, "MAKEFLAGS": ""},
        )

    copy_manifests_with_secrets(tmp_path / "examples", lambda key, value, index: value)
    refused = deploy(tmp_path / "examples")
    assert refused.returncode != 0 and "still holds the example" in refused.stderr
    assert not calls.exists()
    copy_manifests_with_secrets(tmp_path / "chosen", chosen_secrets)
    applied = deploy(tmp_path / "chosen")
    assert applied.returncode == 0, applied.stderr
    assert calls.read_text().split() == ["apply", "-k", "manifests/overlays/local"]


KUSTOMIZE = shutil.which("kubectl") or shutil.which("kustomize")


@pytest.mark.skipif(KUSTOMIZE is None, reason="needs kubectl (kustomize built in) or kustomize")
@pytest.mark.parametrize("overlay", ["local", "production"])
def test_rendered_overlays_are_valid_and_keep_the_hardening(tmp_path, overlay) -> None:
    copy_manifests_with_secrets(tmp_path, chosen_secrets)
    command = [KUSTOMIZE, "kustomize"] if KUSTOMIZE.endswith("kubectl") else [KUSTOMIZE, "build"]
    rendered = subprocess.run(
        [*command, str(tmp_path / "manifests" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    for obj in objects:
        assert validation_errors(obj, CRDS) == [], f"{obj['kind']}/{obj['metadata']['name']}"
    for workload in workloads(objects):
        assert hardening_problems(workload) == [], workload_id(workload)
    kinds = {(obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]) for obj in objects}
    assert ("Secret", JOBS_NS, "longrl-s3") in kinds and ("ConfigMap", PLATFORM_NS, "minio-policies") in kinds
    policies = json.loads(
        next(o for o in objects if o["metadata"]["name"] == "minio-policies")["data"]["longrl-training.json"]
    )
    assert policies == policy("training")


def test_pin_images_writes_digests_and_keeps_entries_code_still_names(tmp_path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("pin_images", ROOT / "scripts" / "pin-images.py")
    pin_images = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin_images)
    for part in ("manifests", "images", "src"):
        shutil.copytree(ROOT / part, tmp_path / part)
    digests = {ref: "sha256:" + f"{index:x}" * 64 for index, ref in enumerate(pin_images.listed(UNPINNED), 1)}
    report = pin_images.pin(list(digests), tmp_path, resolve=lambda ref: digests[ref][:71])
    assert len(report) == len(digests)
    python = "python:3.11.7-slim-bookworm"
    dockerfile = (tmp_path / "images" / "pipeline" / "Dockerfile").read_text()
    assert f"FROM {python}@{digests[python]}\n" in dockerfile
    assert (
        "LONGRL_PIPELINE_IMAGE=ghcr.io/longrl/pipeline:0.1.0 " in dockerfile
    )  # an ENV, not an image to pull
    remaining = pin_images.listed(tmp_path / "images" / "unpinned-images.yaml")
    assert python not in remaining and "rayproject/ray:2.60.0-py311-cu128" not in remaining
    assert "vllm/vllm-openai:v0.32.0" in remaining  # ClusterVerifierConfig's default names it: changed there
    mlflow = (tmp_path / "manifests" / "base" / "mlflow" / "mlflow.yaml").read_text()
    assert f"image: ghcr.io/longrl/pipeline:0.1.0@{digests['ghcr.io/longrl/pipeline:0.1.0']}\n" in mlflow
    assert pin_images.pin_text("FROM a/b:1.0@sha256:x\nFROM a/b:1.0.1\n", "a/b:1.0", "sha256:y") == (
        "FROM a/b:1.0@sha256:x\nFROM a/b:1.0.1\n"
    )


def test_the_setup_job_script_creates_users_from_stdin_and_never_puts_a_secret_on_argv(tmp_path) -> None:
    """Runs the minio-setup Job's script with a fake `mc` that records its arguments and stdin."""
    (job,) = [w for w in workloads() if w["metadata"]["name"] == "minio-setup"]
    (container,) = pod_template(job)["spec"]["containers"]
    shell, *flags = container["command"]
    (script,) = container["args"]
    secrets = {}
    for role in ("pipeline", "training", "mlflow", "verifier"):
        keys = tmp_path / "users" / role
        keys.mkdir(parents=True)
        (keys / "AWS_ACCESS_KEY_ID").write_text(f"longrl-{role}")  # Secret files have no trailing newline
        secrets[role] = f"secret-of-{role}-0123456789"
        (keys / "AWS_SECRET_ACCESS_KEY").write_text(secrets[role])
    (tmp_path / "bin").mkdir()
    calls = tmp_path / "mc-calls"
    fake_mc = tmp_path / "bin" / "mc"
    # `admin user info` reports the pipeline user's policy as attached already: attach is skipped for it
    fake_mc.write_text(
        "#!/bin/sh\n"
        f'echo "ARGV $*" >> {calls}\n'
        'case "$*" in *"admin user add"*) while read -r line; do echo "STDIN $line" >> '
        + str(calls)
        + "; done;;\n"
        '*"admin user info longrl longrl-pipeline"*) echo \'{"policyName": "longrl-pipeline"}\';;\n'
        '*"admin user info"*) echo \'{"policyName": ""}\';;\n'
        "esac\n"
    )
    fake_mc.chmod(0o755)
    root_password = "root-password-0123456789"
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "MC_HOST_longrl": f"http://longrl-root:{root_password}@minio:9000",
    }
    subprocess.run([shell, *flags, script.replace("/run/longrl", str(tmp_path))], env=env, check=True)
    lines = calls.read_text().splitlines()
    argv = [line for line in lines if line.startswith("ARGV ")]
    assert not [line for line in argv if root_password in line or any(s in line for s in secrets.values())]
    assert "ARGV mb --ignore-existing longrl/longrl-artifacts" in argv
    for role, secret in secrets.items():
        assert f"STDIN {secret}" in lines and f"STDIN longrl-{role}" in lines
        assert f"ARGV admin policy create longrl longrl-{role} {tmp_path}/policies/longrl-{role}.json" in argv
        attached = f"ARGV admin policy attach longrl longrl-{role} --user longrl-{role}" in argv
        assert attached is (role != "pipeline"), role
