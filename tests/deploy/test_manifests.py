"""deploy/: the image and the Kubernetes manifests agree with each other and with the server they
run: ports, labels and selectors, probe routes (asked of a real server on a tiny bundle), the
config the server reads, the flags ``conveyor serve`` accepts, a non-root read-only pod.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from conveyor.cli.serve import serve
from conveyor.model import label_vector, save, to_matrix
from conveyor.serving import ModelServer
from conveyor.serving.config import ModelConfig
from conveyor.serving.server import read_config
from conveyor.transform.fitted import load
from tests.conftest import REPO
from tests.model import graphs

DEPLOY = REPO / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
OBJECT_STORAGE = DEPLOY / "kubernetes" / "object-storage"
API_VERSIONS = {
    "ConfigMap": "v1",
    "PersistentVolumeClaim": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}


def read_base() -> dict[str, dict[str, Any]]:
    """The base's manifests by kind, read from the files its kustomization lists."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((BASE / name).read_text())]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert len(by_kind) == len(docs), "one manifest of each kind"
    return by_kind


def render(folder: Path) -> dict[str, dict[str, Any]]:
    """What ``kubectl apply -k folder`` would apply, by kind."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: kustomize cannot render the overlay")
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    return {doc["kind"]: doc for doc in yaml.safe_load_all(out)}


@pytest.fixture(params=["base", "object-storage"])
def manifests(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    return read_base() if request.param == "base" else render(OBJECT_STORAGE)


def pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return manifests["Deployment"]["spec"]["template"]["spec"]


def server_container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = pod(manifests)["containers"]
    return container


def mount_path(container: dict[str, Any], volume: str) -> PurePosixPath:
    (path,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume]
    return PurePosixPath(path)


def dockerfile() -> list[tuple[str, str]]:
    """deploy/Dockerfile's instructions, continuation lines joined, comments left out."""
    lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def instruction(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


def parse_serve_args(args: list[str]) -> dict[str, Any]:
    """The options ``conveyor serve`` reads from ``args``; click fails on a flag it does not know."""
    return serve.make_context("serve", list(args)).params


def test_every_manifest_is_listed_with_its_kind_and_api_version() -> None:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
    assert {kind: doc["apiVersion"] for kind, doc in read_base().items()} == API_VERSIONS


def test_kustomize_renders_the_base_as_written() -> None:
    assert render(BASE) == read_base()


def test_labels_and_selectors_match(manifests: dict[str, dict[str, Any]]) -> None:
    deployment, service = manifests["Deployment"], manifests["Service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = manifests["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
    target = manifests["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}


def test_service_and_image_ports_are_the_containers(manifests: dict[str, dict[str, Any]]) -> None:
    ports = {p["name"]: p["containerPort"] for p in server_container(manifests)["ports"]}
    assert ports == {"http": 8501, "grpc": 8500}
    for port in manifests["Service"]["spec"]["ports"]:
        target = port["targetPort"]
        assert ports.get(target, target) == port["port"]
    assert {int(p) for p in instruction("EXPOSE")[0].split()} == set(ports.values())


def test_the_server_reads_the_configmaps_config_and_the_models_volume(
    manifests: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    container = server_container(manifests)
    options = parse_serve_args(container["args"])
    config_file = PurePosixPath(options["config_file"])
    assert config_file.parent == mount_path(container, "config")
    configmap = manifests["ConfigMap"]["data"]
    (tmp_path / config_file.name).write_text(configmap[config_file.name])
    models, unapplied = read_config(tmp_path / config_file.name)
    assert unapplied == []
    for model in models.values():
        assert PurePosixPath(model.base_path).is_relative_to(mount_path(container, "models"))
    assert options["rest_port"] == 8501
    assert options["host"] == "0.0.0.0"
    assert "command" not in container, "the image's ENTRYPOINT, conveyor serve, runs"


def test_the_images_command_is_conveyor_serve_with_flags_it_accepts() -> None:
    entrypoint, cmd = json.loads(instruction("ENTRYPOINT")[0]), json.loads(instruction("CMD")[0])
    assert entrypoint == ["conveyor", "serve"]
    options = parse_serve_args(cmd)
    assert (options["config_file"], options["host"], options["rest_port"]) == ("/models/config.yaml", "0.0.0.0", 8501)


def test_the_image_is_slim_non_root_and_holds_no_model() -> None:
    build_args = dict(arg.split("=", 1) for arg in instruction("ARG") if "=" in arg)
    assert build_args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert {image.split()[0] for image in instruction("FROM")} == {"${PYTHON_IMAGE}"}
    assert any("[serve${EXTRAS:+,${EXTRAS}}]" in run for run in instruction("RUN"))
    (user,) = instruction("USER")
    assert int(user.split(":")[0]) == pod(read_base())["securityContext"]["runAsUser"] != 0
    sources = [path for arg in instruction("COPY") if not arg.startswith("--from") for path in arg.split()[:-1]]
    assert not any("serving" in path or "models" in path for path in sources)


def test_the_build_context_holds_what_the_wheel_is_built_from() -> None:
    """.dockerignore lets in every file the Dockerfile copies, and the wheel needs no other."""
    kept = [line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    hatch = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = ["pyproject.toml", project["project"]["readme"], *hatch["packages"], *hatch["force-include"]]
    copied = [path for arg in instruction("COPY") if not arg.startswith("--from") for path in arg.split()[:-1]]
    assert sorted(needed) == sorted(copied) == sorted(kept)


def test_the_pod_runs_as_non_root_on_a_read_only_filesystem(manifests: dict[str, dict[str, Any]]) -> None:
    spec = pod(manifests)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    server = server_container(manifests)
    assert all(m["readOnly"] for m in server["volumeMounts"] if m["mountPath"] != "/tmp")
    assert "replicas" not in manifests["Deployment"]["spec"], "the HorizontalPodAutoscaler owns the count"


def test_models_come_from_the_claim_or_from_object_storage() -> None:
    base = read_base()
    (models,) = [v for v in pod(base)["volumes"] if v["name"] == "models"]
    assert models["persistentVolumeClaim"] == {
        "claimName": base["PersistentVolumeClaim"]["metadata"]["name"],
        "readOnly": True,
    }
    synced = render(OBJECT_STORAGE)
    assert "PersistentVolumeClaim" not in synced
    (models,) = [v for v in pod(synced)["volumes"] if v["name"] == "models"]
    assert models.keys() == {"name", "emptyDir"}
    (sync,) = pod(synced)["initContainers"]
    source, destination = sync["args"][2:4]
    assert sync["args"][:2] == ["s3", "sync"]
    assert source.startswith("s3://")
    assert sync["args"][4:6] == ["--exclude", ".*"], "the Pusher's uploads in progress stay out"
    assert PurePosixPath(destination).is_relative_to(mount_path(sync, "models"))
    assert mount_path(sync, "models") == mount_path(server_container(synced), "models")
    config = yaml.safe_load(synced["ConfigMap"]["data"]["config.yaml"])
    assert destination in {m["base_path"] for m in config["models"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """A real ModelServer on the ConfigMap's config, its models volume a folder holding a tiny
    logistic regression pushed as version 1 of each model."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    root = tmp_path_factory.mktemp("deploy")
    base = read_base()
    container = server_container(base)
    (root / "config.yaml").write_text(base["ConfigMap"]["data"]["config.yaml"])
    graph_dir = graphs.saved("binary", root / "graph", sparse=False)
    graph = load(graph_dir)
    columns = graph.apply(graphs.table())
    x, _ = to_matrix(columns, graph.describe(), "disputed")
    model = linear_model.LogisticRegression().fit(x, label_vector(columns, "disputed"))
    volume: dict[str, ModelConfig] = {}
    for name, served in read_config(root / "config.yaml")[0].items():
        local = root / "models" / PurePosixPath(served.base_path).relative_to(mount_path(container, "models"))
        save(model, path=local / "1", transform_graph=graph_dir, label="disputed")
        volume[name] = dataclasses.replace(served, base_path=local)
    with ModelServer(volume, rest_port=0) as running:
        yield running


def get(server: ModelServer, path: str) -> int:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    connection.request("GET", path)
    status = connection.getresponse().status
    connection.close()
    return status


def test_the_probes_and_the_healthcheck_ask_routes_the_server_answers(server: ModelServer) -> None:
    container = server_container(read_base())
    probes = [container[probe]["httpGet"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert {probe["port"] for probe in probes} == {"http"}
    (healthcheck,) = instruction("HEALTHCHECK")
    healthcheck_path = "/" + healthcheck.split("http://127.0.0.1:8501/", 1)[1].split("'")[0]
    for path in [probe["path"] for probe in probes] + [healthcheck_path]:
        assert get(server, path) == 200, path


def test_the_service_monitor_scrapes_a_route_the_server_answers(server: ModelServer) -> None:
    (endpoint,) = read_base()["ServiceMonitor"]["spec"]["endpoints"]
    assert get(server, endpoint["path"]) == 200


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    subprocess.run(["hadolint", str(DEPLOY / "Dockerfile")], check=True)
