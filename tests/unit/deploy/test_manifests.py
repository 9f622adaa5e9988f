"""The manifests under deploy/: Kubernetes objects validate offline against the API schemas
(kubernetes-validate), the kustomize overlays render, and what Sluice relies on in KServe's and
the Prometheus Operator's resources (not in those schemas) holds: flags the CLI really has,
ports that agree, metrics Sluice really exports, an init pull that really installs a model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.examples import write_repository
from serving.metrics import Metrics
from serving.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KSERVE = DEPLOY / "kserve"
OVERLAYS = sorted(p.parent for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
# The oldest Kubernetes these manifests are meant for, and the newest schemas installed.
SCHEMA_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
# Custom resources kubernetes-validate has no schema for; each has tests of its own below.
CUSTOM_KINDS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("serving.kserve.io/v1alpha1", "ClusterStorageContainer"),
    ("serving.kserve.io/v1beta1", "InferenceService"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _patch_files() -> set[Path]:
    return {
        overlay / entry["path"]
        for overlay in OVERLAYS
        for entry in _load(overlay / "kustomization.yaml")[0].get("patches", [])
    }


def _manifests() -> list[tuple[Path, int, dict[str, Any]]]:
    """Every whole object under deploy/ (not kustomizations, not an overlay's partial patches)."""
    skip = _patch_files()
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path in skip:
            continue
        found.extend((path, i, doc) for i, doc in enumerate(_load(path)))
    return found


def _id(path: Path, index: int, doc: dict[str, Any]) -> str:
    return f"{path.relative_to(DEPLOY)}#{index}:{doc.get('kind')}"


MANIFESTS = _manifests()
CORE = [m for m in MANIFESTS if (m[2].get("apiVersion"), m[2].get("kind")) not in CUSTOM_KINDS]


def _one(kind: str, path: Path) -> dict[str, Any]:
    docs = [doc for doc in _load(path) if doc["kind"] == kind]
    assert len(docs) == 1, f"{path}: expected one {kind}"
    return docs[0]


def _flags(*command: str) -> set[str]:
    """The long options ``sluice COMMAND --help`` lists, from the real parser."""
    out = subprocess.run(
        [sys.executable, "-m", "serving", *command, "--help"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", out.stdout))


@pytest.fixture(scope="module")
def serve_flags() -> set[str]:
    return _flags("serve")


@pytest.fixture(scope="module")
def pull_flags() -> set[str]:
    return _flags("pull")


def _option_names(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def _option(args: list[str], name: str) -> str:
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


def _serve_accepts(args: list[str], env: dict[str, str] | None = None) -> None:
    """``sluice serve ARGS`` (with ``env``'s variables) gets past the argument parser: it fails
    only on the model repository, which does not exist here (exit 1), never on usage (exit 2)."""
    missing = "/nonexistent/sluice-manifest-test"
    args = [missing if a == "/mnt/models" or a == "/models" else a for a in args]
    args = [re.sub(r"^(--model-repository=).*", rf"\g<1>{missing}", a) for a in args]
    run = subprocess.run(
        [sys.executable, "-m", "serving", "serve", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=None if env is None else _environment(**env, SLUICE_MODEL_REPOSITORY=missing),
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert missing in run.stderr and "is not a directory" in run.stderr, run.stderr


def _container(pod_spec: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    containers = pod_spec["initContainers" if init else "containers"]
    return next(c for c in containers if c["name"] == name)


# -- every object validates ------------------------------------------------------------------


def test_deploy_holds_every_kind_the_design_needs() -> None:
    kinds = {doc["kind"] for _, _, doc in MANIFESTS}
    assert {
        "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ConfigMap",
        "ServiceMonitor", "ServingRuntime", "InferenceService", "ClusterStorageContainer",
    } <= kinds  # fmt: skip


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize(("path", "index", "doc"), CORE, ids=[_id(*m) for m in CORE])
def test_kubernetes_objects_validate_against_the_api_schema(
    path: Path, index: int, doc: dict[str, Any], version: str
) -> None:
    # strict: an unknown or misspelt field is an error, not silently dropped by the API server
    kubernetes_validate.validate(doc, version, strict=True)


def test_every_manifest_is_either_schema_checked_or_a_custom_kind_tested_here() -> None:
    for path, index, doc in MANIFESTS:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CUSTOM_KINDS:
            continue
        # a kind kubernetes-validate knows: it validated above, or it raises here
        try:
            kubernetes_validate.validate(doc, SCHEMA_VERSIONS[-1], strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{_id(path, index, doc)}: no schema and no test of its fields")


# -- kustomize --------------------------------------------------------------------------------


def test_kustomizations_reference_files_that_exist() -> None:
    kustomizations = sorted(KUBERNETES.rglob("kustomization.yaml"))
    assert {p.parent.name for p in kustomizations} == {"base", "cpu", "gpu"}
    for path in kustomizations:
        kustomization = _load(path)[0]
        entries = [*kustomization.get("resources", [])]
        entries += [p["path"] for p in kustomization.get("patches", [])]
        for entry in entries:
            assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"


def test_overlay_patches_name_objects_of_the_base() -> None:
    base = {
        (doc["apiVersion"], doc["kind"], doc["metadata"]["name"])
        for entry in _load(KUBERNETES / "base" / "kustomization.yaml")[0]["resources"]
        for doc in _load(KUBERNETES / "base" / entry)
    }
    patches = _patch_files()
    assert patches
    for path in patches:
        for doc in _load(path):
            target = (doc["apiVersion"], doc["kind"], doc["metadata"]["name"])
            assert target in base, f"{path} patches {target}, which the base does not hold"


def _kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    command = _kustomize()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed; overlays not rendered")
    return {
        overlay.name: [
            doc
            for doc in yaml.safe_load_all(
                subprocess.run(
                    [*command, str(overlay)], capture_output=True, text=True, check=True
                ).stdout
            )
            if doc
        ]
        for overlay in OVERLAYS
    }


@pytest.mark.parametrize("overlay", [p.name for p in OVERLAYS])
def test_overlays_render_to_valid_objects(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = rendered[overlay]
    assert len(docs) == len(_load_base_objects())
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, SCHEMA_VERSIONS[-1], strict=True)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    images = {c["image"] for c in [*pod["containers"], *pod["initContainers"]]}
    assert images == {f"registry.example.com/sluice:0.1.0-{overlay}"}
    limits = _container(pod, "sluice")["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == (overlay == "gpu")
    # the labels kustomize adds select the pods in every selector
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for doc in docs:
        if doc["kind"] == "Service":
            assert doc["spec"]["selector"].items() <= labels.items()
        if doc["kind"] == "PodDisruptionBudget":
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if doc["kind"] == "ServiceMonitor":
            service = next(
                d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "sluice"
            )
            assert doc["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()  # fmt: skip


def _load_base_objects() -> list[dict[str, Any]]:
    kustomization = _load(KUBERNETES / "base" / "kustomization.yaml")[0]
    return [doc for entry in kustomization["resources"] for doc in _load(KUBERNETES / "base" / entry)]  # fmt: skip


# -- the Deployment -------------------------------------------------------------------------


def _base(kind: str, name: str = "sluice") -> dict[str, Any]:
    return next(
        d for d in _load_base_objects() if d["kind"] == kind and d["metadata"]["name"] == name
    )


def test_probes_follow_the_health_routes_and_the_grace_period_outlasts_the_drain(
    tmp_path: Path,
) -> None:
    pod = _base("Deployment")["spec"]["template"]["spec"]
    server = _container(pod, "sluice")
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = server["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # slow model loads
    command = server["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = Settings(model_repository=tmp_path).drain_timeout_secs
    assert pod["terminationGracePeriodSeconds"] > int(command[1]) + drain


def test_ports_agree_between_container_services_and_monitor() -> None:
    server = _container(_base("Deployment")["spec"]["template"]["spec"], "sluice")
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}  # the image's defaults
    for service in (_base("Service"), _base("Service", "sluice-grpc")):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    monitor = _base("ServiceMonitor")
    service_ports = {p["name"] for p in _base("Service")["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
    assert _base("Service", "sluice-grpc")["spec"]["clusterIP"] == "None"


def test_server_arguments_and_variables_are_settings_sluice_serve_has(
    serve_flags: set[str],
) -> None:
    server = _container(_base("Deployment")["spec"]["template"]["spec"], "sluice")
    assert "args" not in server  # the image's variables and the ConfigMap's say everything
    variables = {e["name"]: e["value"] for e in server.get("env", [])}
    variables |= {k: v for k, v in _base("ConfigMap")["data"].items() if k.startswith("SLUICE_")}
    for name in variables:  # SLUICE_REGISTRY_POLL_SECS is --registry-poll-secs
        if name == "SLUICE_REGISTRY":  # --registry's default, as for sluice pull
            continue
        assert "--" + name.removeprefix("SLUICE_").lower().replace("_", "-") in serve_flags, name
    _serve_accepts([], variables)


def _image_variable(name: str) -> str:
    """What deploy/Containerfile's ENV sets ``name`` to."""
    found = re.search(rf"^\s+{name}=(\S+)", (ROOT / "deploy" / "Containerfile").read_text(), re.M)
    assert found is not None, name
    return found.group(1)


def _local_registry(tmp_path: Path) -> tuple[Path, str]:
    """A local registry holding the example `simple` model as version 1."""
    models = tmp_path / "files"
    write_repository(models, ["simple"])
    registry = tmp_path / "registry"
    subprocess.run(
        [sys.executable, "-m", "serving", "registry", "register", "fraud",
         str(models / "simple" / "1" / "model.onnx"), "--registry", str(registry)],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    return registry, "models:/fraud/1"


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | extra


def test_the_init_container_pulls_the_reference_into_the_shared_volume(
    tmp_path: Path, pull_flags: set[str]
) -> None:
    pod = _base("Deployment")["spec"]["template"]["spec"]
    init = _container(pod, "pull", init=True)
    server = _container(pod, "sluice")
    mount = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mount.items() <= {m["name"]: m["mountPath"] for m in server["volumeMounts"]}.items()
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] in mount)
    assert init["command"] == ["sluice", "pull"]
    assert set(_option_names(init["args"])) <= pull_flags
    # Run it as the kubelet would: $(VAR) from the ConfigMap, the registry a local one here.
    registry, ref = _local_registry(tmp_path)
    env = dict(_base("ConfigMap")["data"]) | {"SLUICE_MODEL": ref, "SLUICE_REGISTRY": str(registry)}
    args = [_VAR.sub(lambda m: env[m.group(1)], a) for a in init["args"]]
    volume = tmp_path / "volume"
    args = [str(volume) if a == mount["models"] else a for a in args]
    subprocess.run(
        [*init["command"], *args], check=True, capture_output=True, timeout=120,
        env=_environment(SLUICE_REGISTRY=env["SLUICE_REGISTRY"]),
    )  # fmt: skip
    assert (volume / "fraud" / "1" / "model.onnx").is_file()
    # the server serves that volume (the image's SLUICE_MODEL_REPOSITORY) and follows the
    # reference pulled (SLUICE_MODEL, from the same ConfigMap)
    assert _image_variable("SLUICE_MODEL_REPOSITORY") == mount["models"]
    assert init["args"][0] == "$(SLUICE_MODEL)"
    assert {"configMapRef": {"name": "sluice"}} in server["envFrom"]


# -- autoscaling: the HPA's metrics, the adapter's rules, Sluice's metrics --------------------


def _exported_series() -> set[str]:
    """Sample names Sluice's /metrics renders once a model has served a request."""
    metrics = Metrics()
    metrics.model_ready.labels("m", "1").set(1)
    metrics.set_queue_depth("m", "1", 0)
    metrics.observe_failure("m", "1", 1000)
    return {
        sample.name
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


def _adapter_rules() -> list[dict[str, Any]]:
    configmap = _one("ConfigMap", KUBERNETES / "prometheus-adapter" / "configmap.yaml")
    return yaml.safe_load(configmap["data"]["config.yaml"])["rules"]


def test_the_autoscaler_reads_metrics_the_adapter_derives_from_what_sluice_exports() -> None:
    hpa = _base("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == _base("Deployment")["metadata"]["name"]
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert wanted == {"sluice_requests_in_flight", "sluice_queue_depth"}
    rules = {rule["name"]["as"]: rule for rule in _adapter_rules()}
    assert wanted <= rules.keys()
    exported = _exported_series()
    for name in wanted:
        rule = rules[name]
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}  # per pod
        series = re.match(r"([a-z_]+)\{", rule["seriesQuery"]).group(1)  # type: ignore[union-attr]
        assert re.fullmatch(rule["name"]["matches"], series)
        used = {series, *re.findall(r"\bsluice_[a-z_]+", rule["metricsQuery"])}
        assert used <= exported, f"{name}: {used - exported} are not Sluice metrics"


# -- KServe -------------------------------------------------------------------------------------


def _runtime() -> dict[str, Any]:
    return _one("ServingRuntime", KSERVE / "servingruntime.yaml")


def test_serving_runtime_declares_onnx_and_both_v2_protocols() -> None:
    runtime = _runtime()
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    formats = runtime["spec"]["supportedModelFormats"]
    assert any(f["name"] == "onnx" and f.get("autoSelect") is True for f in formats)
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    # the container itself is a core/v1 Container: schema-checked as one
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
         "spec": {"containers": [container]}},
        SCHEMA_VERSIONS[-1], strict=True,
    )  # fmt: skip


def test_serving_runtime_follows_kserves_mount_and_port_conventions(
    serve_flags: set[str],
) -> None:
    runtime = _runtime()
    (container,) = runtime["spec"]["containers"]
    assert container["command"] == ["sluice", "serve"]
    args = container["args"]
    assert set(_option_names(args)) <= serve_flags
    assert _option(args, "--model-repository") == "/mnt/models"
    http = int(_option(args, "--http-port"))
    assert (http, int(_option(args, "--grpc-port"))) == (8080, 9000)
    assert [p["containerPort"] for p in container["ports"]] == [http]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": http}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": http}
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == _option(args, "--metrics-port")
    assert _option(args, "--host") == "0.0.0.0"
    _serve_accepts(args)


def test_inference_services_use_the_runtime_and_canary_part_of_the_traffic() -> None:
    runtime = _runtime()
    (container,) = runtime["spec"]["containers"]
    http = _one("InferenceService", KSERVE / "inferenceservice.yaml")
    grpc = _one("InferenceService", KSERVE / "inferenceservice-grpc.yaml")
    for service in (http, grpc):
        assert service["apiVersion"] == "serving.kserve.io/v1beta1"
        model = service["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["modelFormat"]["name"] == "onnx"
        assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
        # canaryTrafficPercent needs Knative
        assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"  # fmt: skip
    assert 0 < http["spec"]["predictor"]["canaryTrafficPercent"] < 100
    (port,) = grpc["spec"]["predictor"]["model"]["ports"]
    assert port["name"] == "h2c"
    assert port["containerPort"] == int(_option(container["args"], "--grpc-port"))


def test_storage_container_pulls_models_uris_as_kserve_invokes_it(
    tmp_path: Path, pull_flags: set[str]
) -> None:
    storage = _one("ClusterStorageContainer", KSERVE / "storagecontainer.yaml")
    container = storage["spec"]["container"]
    assert container["name"] == "storage-initializer"
    assert storage["spec"]["supportedUriFormats"] == [{"prefix": "models:/"}]
    assert container["command"][:2] == ["sluice", "pull"]  # no shell: KServe's args follow
    assert set(_option_names(container["command"])) <= pull_flags
    # KServe runs the storage initializer with two arguments: the storageUri and /mnt/models.
    registry, ref = _local_registry(tmp_path)
    mnt = tmp_path / "mnt-models"
    env = {e["name"]: e["value"] for e in container["env"]} | {"SLUICE_REGISTRY": str(registry)}
    subprocess.run(
        [*container["command"], ref, str(mnt)], check=True, capture_output=True, timeout=120,
        env=_environment(**env),
    )  # fmt: skip
    assert (mnt / "fraud" / "1" / "model.onnx").is_file()


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_images_run_as_the_non_root_user_of_the_containerfile() -> None:
    containerfile = (DEPLOY / "Containerfile").read_text()
    (uid,) = re.findall(r"^USER (\d+):\d+$", containerfile, re.M)
    for path, _, doc in MANIFESTS:
        for node in _walk(doc):
            if isinstance(node, dict) and "runAsUser" in node:
                assert str(node["runAsUser"]) == uid, path
                assert node.get("runAsNonRoot", True) is True, path
