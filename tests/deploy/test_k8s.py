"""deploy/k8s renders (Kustomize subset, offline) and every object validates against the Kubernetes schemas
(`kubernetes-validate`, strict: no unknown fields); the pieces fit together and the settings are valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.store import is_cluster_url
from app.store.client import cluster_seed_nodes
from tests.deploy.kustomize_lite import render

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
FOLDERS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
KUBERNETES_VERSION = "1.30.0"


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [item["kind"] for item in objects]
    assert len(kinds) == len(set(kinds)), kinds  # one object of each kind
    return {item["kind"]: item for item in objects}


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_manifests_validate_against_the_kubernetes_schemas(name: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objects = render(FOLDERS[name])
    assert {item["kind"] for item in objects} == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for item in objects:
        kubernetes_validate.validate(item, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_the_pieces_fit_together(name: str) -> None:
    objects = by_kind(render(FOLDERS[name]))
    deployment, pod_labels = objects["Deployment"], objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # a Redis outage must not restart pods
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000} and objects["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    refs = [source.get("configMapRef", source.get("secretRef"))["name"] for source in container["envFrom"]]
    assert refs == [objects["ConfigMap"]["metadata"]["name"], objects["Secret"]["metadata"]["name"]]
    security = pod["securityContext"] | container["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] != 0 and not security["allowPrivilegeEscalation"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/tmp"}  # the only writable path
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert requests == {"cpu": "1", "memory": "1Gi"} and limits == {"cpu": "2", "memory": "1536Mi"}


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_configmap_and_secret_are_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key names a real setting and every value parses (what the pods would start with)."""
    objects = by_kind(render(FOLDERS[name]))
    environment = objects["ConfigMap"]["data"] | objects["Secret"]["stringData"]
    fields = {f"FEWSHOT_{field.upper()}" for field in Settings.model_fields}
    assert set(environment) <= fields, set(environment) - fields
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.store == "redis" and settings.auth_enabled and settings.admin_key_sha256
    if name == "production":
        assert is_cluster_url(settings.redis_url) and len(cluster_seed_nodes(settings.redis_url)[0]) == 3
        assert settings.redis_wait_replicas == 1


def test_overlay_sets_namespace_and_image() -> None:
    objects = render(FOLDERS["production"])
    assert {item["metadata"].get("namespace") for item in objects} == {"fewshot"}
    container = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/fewshot:1.0.0"
    assert by_kind(objects)["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert by_kind(render(FOLDERS["base"]))["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "fewshot:latest"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed (the subset renderer stands in)")
@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_subset_renderer_matches_kubectl_kustomize(name: str) -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(FOLDERS[name])], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    expected = sorted((item for item in yaml.safe_load_all(rendered) if item), key=lambda item: item["kind"])
    assert sorted(render(FOLDERS[name]), key=lambda item: item["kind"]) == expected


def test_the_validator_refuses_a_wrong_manifest() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = by_kind(render(FOLDERS["base"]))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"bad": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = by_kind(render(FOLDERS["base"]))["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_subset_renderer_merges_like_a_strategic_merge_patch(tmp_path: Path) -> None:
    from tests.deploy.kustomize_lite import merge

    base = {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}, {"name": "b"}], "n": 1}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}], "args": ["x"]}}
    assert merge(base, patch) == {
        "spec": {
            "containers": [
                {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "b"},
            ],
            "n": 1,
            "args": ["x"],
        }
    }
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(ValueError, match="configMapGenerator"):
        render(tmp_path)
