"""A small Kustomize renderer for the subset deploy/k8s uses, so the manifests render offline without kubectl.

Supported: `resources` (YAML files, or folders holding a kustomization.yaml), `namespace`, `images` (`newName`,
`newTag`) and `patches` with a `path` (strategic merge, the target found by the patch's kind and name: maps
merge, lists of maps merge by `name`, other lists are replaced). Anything else in a kustomization.yaml is refused,
so a manifest change outside the subset fails loudly instead of rendering wrong. Where `kubectl` is installed,
tests/deploy/test_k8s.py checks this renderer's output against `kubectl kustomize`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass"}


def render(folder: Path) -> list[Object]:
    """The objects a kustomization folder renders to."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unsupported = set(spec) - SUPPORTED_FIELDS
    if unsupported:
        raise ValueError(f"{folder}: kustomization fields outside the supported subset: {sorted(unsupported)}")
    objects: list[Object] = []
    for resource in spec.get("resources", []):
        path = folder / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [item for item in yaml.safe_load_all(path.read_text()) if item]
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{folder}: only `patches: - path: ...` is supported, not {patch}")
        for change in yaml.safe_load_all((folder / patch["path"]).read_text()):
            target = _find(objects, change["kind"], change["metadata"]["name"])
            merged = merge(target, change)
            target.clear()
            target.update(merged)
    for image in spec.get("images", []):
        _set_image(objects, image)
    if "namespace" in spec:
        for item in objects:
            if item["kind"] not in CLUSTER_SCOPED_KINDS:
                item.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return objects


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge of `patch` into a copy of `base` (the subset described above)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        merged_list = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old["name"] == item["name"]), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _find(objects: list[Object], kind: str, name: str) -> Object:
    for item in objects:
        if item["kind"] == kind and item["metadata"]["name"] == name:
            return item
    raise ValueError(f"patch target {kind}/{name} not found")


def _set_image(objects: list[Object], image: dict[str, str]) -> None:
    """Rewrite container images named `image["name"]` (with or without a tag) to newName:newTag."""
    for item in objects:
        pod = item.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
