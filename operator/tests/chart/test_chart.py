"""The Helm chart renders, lints, and every object it or manifests/ holds is valid Kubernetes 1.32."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import helm_python
import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from render import CHART, CRD, REPO, render, write_manifests  # noqa: E402

K8S_VERSION = "1.32.0"
# The console script beside this interpreter (a venv), else whatever is on PATH.
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
if not KUBERNETES_VALIDATE.exists():
    KUBERNETES_VALIDATE = Path(shutil.which("kubernetes-validate") or "kubernetes-validate")


def kinds(objects):
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)


def validate_strict(tmp_path: Path, objects: list[dict]) -> None:
    """Every built-in object (CRDs included) against the 1.32 schemas, unknown fields rejected."""
    builtin = [o for o in objects if o["apiVersion"] != "chronik.io/v1alpha1"]
    path = tmp_path / "objects.yaml"
    path.write_text("---\n".join(yaml.safe_dump(o) for o in builtin))
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "-k", K8S_VERSION, "--strict", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def crd_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text().split("\n", 1)[1])
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate_cluster(obj: dict) -> None:
    """A ChronikCluster against the CRD's structural schema (types, enums, minimums)."""
    jsonschema.validate(obj, crd_schema())


def test_default_install_renders_operator_rbac_and_service():
    objects = render()
    assert kinds(objects) == [
        "ClusterRole/chronik-operator",
        "ClusterRoleBinding/chronik-operator",
        "Deployment/chronik-operator",
        "Role/chronik-operator-leader",
        "RoleBinding/chronik-operator-leader",
        "Service/chronik-operator-metrics",
        "ServiceAccount/chronik-operator",
    ]
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] == 2
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WATCH_NAMESPACE"]["value"] == ""
    assert "DISABLE_LEADER_ELECTION" not in env


def test_watch_namespace_uses_a_namespaced_role_instead_of_a_cluster_role():
    objects = render({"watchNamespace": "team-a"})
    assert not [o for o in objects if o["kind"].startswith("Cluster")]
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "chronik-operator")
    assert role["metadata"]["namespace"] == "team-a"


def test_rbac_is_least_privilege():
    role = next(o for o in render() if o["kind"] == "ClusterRole")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"], "secrets are only read"
    leader = next(o for o in render() if o["metadata"]["name"] == "chronik-operator-leader" and o["kind"] == "Role")
    assert leader["rules"][0]["resources"] == ["leases"]


def test_image_resources_and_single_replica_without_leader_election():
    objects = render(
        {
            "image": {"repository": "reg/op", "tag": "9"},
            "resources": {"limits": {"memory": "1Gi"}},
            "leaderElection": {"enabled": False},
        }
    )
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/op:9"
    assert container["resources"]["limits"] == {"memory": "1Gi"}
    assert deploy["spec"]["replicas"] == 1
    assert {"name": "DISABLE_LEADER_ELECTION", "value": "true"} in container["env"]
    assert not [o for o in objects if o["metadata"]["name"].endswith("-leader")]


def test_optional_cluster_is_rendered_and_valid():
    objects = render({"cluster": {"enabled": True, "name": "events", "spec": {"replicas": 5}}})
    cluster = next(o for o in objects if o["kind"] == "ChronikCluster")
    assert cluster["metadata"] == {
        "name": "events",
        "namespace": "chronik-system",
        "labels": cluster["metadata"]["labels"],
    }
    validate_cluster(cluster)


def test_chart_crd_is_the_generated_crd():
    chart_crds = helm_python.Chart.load(str(CHART)).crds
    assert [c["filename"].rsplit("/", 1)[-1] for c in chart_crds] == [CRD.name]
    assert (CHART / "crds" / CRD.name).read_text() == CRD.read_text(), "run make generate"


@pytest.mark.parametrize(
    "values",
    [{"replicaCount": 0}, {"logFormat": "xml"}, {"metrics": {"port": 70000}}],
    ids=["no-replicas", "log-format", "port"],
)
def test_values_schema_rejects_bad_values(values):
    with pytest.raises(helm_python.HelmError):
        render(values)


def test_chart_lints_clean():
    report = helm_python.lint(str(CHART), strict=True, kube_version="v1.32.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2]
    assert not errors and not report.get("errors"), report


@pytest.mark.parametrize(
    "values",
    [{}, {"watchNamespace": "team-a"}, {"leaderElection": {"enabled": False}}, {"cluster": {"enabled": True}}],
    ids=["default", "namespaced", "single", "with-cluster"],
)
def test_rendered_objects_pass_kubernetes_validate(tmp_path, values):
    validate_strict(tmp_path, render(values))


def test_manifests_operator_is_the_rendered_chart(tmp_path):
    write_manifests(tmp_path)
    for f in ("00-crd.yaml", "10-operator.yaml"):
        committed = REPO / "manifests" / "operator" / f
        assert committed.read_text() == (tmp_path / f).read_text(), f"{committed} is stale: run make generate"


def all_manifest_objects():
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def test_every_manifest_object_is_valid(tmp_path):
    objects = [doc for _, doc in all_manifest_objects()]
    validate_strict(tmp_path, objects)
    clusters = [o for o in objects if o["kind"] == "ChronikCluster"]
    assert len(clusters) >= 3
    for c in clusters:
        validate_cluster(c)


def test_crd_schema_rejects_zero_replicas():
    bad = {"apiVersion": "chronik.io/v1alpha1", "kind": "ChronikCluster", "metadata": {"name": "x"}, "spec": {"replicas": 0}}
    with pytest.raises(jsonschema.ValidationError):
        validate_cluster(bad)
