"""The Helm chart renders, with Helm's own engine, into valid Kubernetes objects that run Glimpse as it is.

Helm comes from the `helm-python-sdk` wheel (Helm v4's Go SDK behind a C ABI: the same chart
loader, values schema check, template engine and linter as the `helm` command, offline), and the
Kubernetes JSON schemas from the `kubernetes-validate` wheel (strict: an unknown field fails).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from bot.config import DiscordSettings, Secrets, Settings, load_settings
from bot.health import HealthServer

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "glimpse"
RELEASE = "glimpse"
# The oldest Kubernetes the schemas wheel ships (the chart itself asks for 1.23 or newer) and its newest.
KUBE_VERSIONS = ("1.28", kubernetes_validate.latest_version())

PRODUCTION: dict[str, Any] = {
    "image": {"repository": "registry.example.com/glimpse", "tag": "0.1.0"},
    "secrets": {"create": False, "existingSecret": "glimpse-tokens"},
    "config": 'model = "qwen/qwen2.5-vl-72b-instruct"\nretention_days = 14\n',
    "extraEnv": [{"name": "GLIMPSE_MAX_CONCURRENT_ANSWERS", "value": "32"}],
    "slack": {
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8},
        "podDisruptionBudget": {"enabled": True},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "host": "glimpse.example.org",
            "tlsSecretName": "glimpse-tls",
        },
    },
    "discord": {"replicas": 3, "shardsPerPod": 2, "podDisruptionBudget": {"enabled": True}},
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`helm template` of the chart: every object it renders (NOTES.txt is no manifest)."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=RELEASE, namespace="bots", is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [item for item in objects if item["kind"] == kind]
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def env_of(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container(workload)["env"]}


SCENARIOS = {
    "defaults": {},
    "production": PRODUCTION,
    "slack only": {"discord": {"enabled": False}},
    "discord only": {"slack": {"enabled": False}, "secrets": {"discordToken": "x"}},
}


def test_the_chart_lints_clean_with_helm_strict() -> None:
    for values in SCENARIOS.values():
        report = helm.lint(str(CHART), values, strict=True)
        assert report["errors"] == []
        # severity 1 is information ("icon is recommended"); 2 warnings, 3 errors
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_is_valid_for_kubernetes(scenario: str) -> None:
    objects = render(SCENARIOS[scenario])
    assert objects
    for version in KUBE_VERSIONS:
        for item in objects:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{item['kind']} {item['metadata']['name']} on {version}: {exc}")


def test_the_kinds_each_scenario_renders() -> None:
    kinds = {name: sorted(o["kind"] for o in render(values)) for name, values in SCENARIOS.items()}
    assert kinds["defaults"] == [
        "ConfigMap", "Deployment", "Secret", "Service", "Service", "ServiceAccount", "StatefulSet"
    ]  # fmt: skip
    assert kinds["production"] == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "PodDisruptionBudget",
        "PodDisruptionBudget",
        "Service",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    ]  # fmt: skip  (an existing Secret: the chart makes none)
    assert "StatefulSet" not in kinds["slack only"] and "Deployment" not in kinds["discord only"]


def test_values_outside_the_schema_are_refused() -> None:
    for bad in (
        {"discord": {"replicas": 0}},
        {"discord": {"shardsPerPod": "2"}},
        {"slak": {"enabled": False}},  # a typo is not silently ignored
        {"redis": {"url": "http://redis:6379"}},
    ):
        with pytest.raises(helm.HelmError, match="schema"):
            render(bad)


def test_an_existing_secret_must_be_named() -> None:
    with pytest.raises(helm.HelmError, match="secrets.existingSecret"):
        render({"secrets": {"create": False}})


# --- Discord: each pod computes its shards from its ordinal ---


def shards_of_pod(statefulset: dict[str, Any], ordinal: int, bin_dir: Path) -> tuple[int, str]:
    """Run the pod's own `sh -c` entrypoint as pod `ordinal`; a fake `glimpse` prints what it got."""
    spec = container(statefulset)
    assert spec["command"] == ["sh", "-c"]
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "POD_NAME": f"{statefulset['metadata']['name']}-{ordinal}",
        "GLIMPSE_DISCORD__SHARD_COUNT": env_of(statefulset)["GLIMPSE_DISCORD__SHARD_COUNT"][
            "value"
        ],
    }
    done = subprocess.run(
        ["sh", "-c", spec["args"][0]], env=env, capture_output=True, text=True, timeout=10
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def fake_glimpse(tmp_path: Path) -> Path:
    script = tmp_path / "glimpse"
    script.write_text('#!/bin/sh\necho "shards=$GLIMPSE_DISCORD__SHARD_IDS args=$*"\n')
    script.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize(("replicas", "per_pod"), [(1, 1), (3, 1), (2, 3), (4, 2)])
def test_pods_0_to_r_minus_1_run_every_shard_exactly_once(
    replicas: int, per_pod: int, fake_glimpse: Path
) -> None:
    statefulset = one(
        render({"discord": {"replicas": replicas, "shardsPerPod": per_pod}}), "StatefulSet"
    )
    assert statefulset["spec"]["replicas"] == replicas
    count = int(env_of(statefulset)["GLIMPSE_DISCORD__SHARD_COUNT"]["value"])
    assert count == replicas * per_pod
    seen: list[int] = []
    for ordinal in range(replicas):
        code, output = shards_of_pod(statefulset, ordinal, fake_glimpse)
        assert code == 0, output
        found = re.fullmatch(r"shards=([\d,]+) args=run --platform discord\n", output)
        assert found, output
        ids = [int(part) for part in found.group(1).split(",")]
        assert len(ids) == per_pod
        seen += ids
    assert sorted(seen) == list(range(count))  # every shard, none twice


def test_a_pod_beyond_the_shard_count_refuses_to_start(fake_glimpse: Path) -> None:
    statefulset = one(render({"discord": {"replicas": 2, "shardsPerPod": 2}}), "StatefulSet")
    code, output = shards_of_pod(statefulset, 2, fake_glimpse)  # `kubectl scale --replicas=3`
    assert code == 2 and "helm upgrade" in output and "shards=" not in output


def test_the_ordinal_comes_from_the_pod_name_of_the_headless_statefulset() -> None:
    objects = render()
    statefulset = one(objects, "StatefulSet")
    pod_name = env_of(statefulset)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert pod_name == "metadata.name"  # <statefulset name>-<ordinal>, on every Kubernetes
    [headless] = [o for o in objects if o["kind"] == "Service" and o["spec"].get("clusterIP")]
    assert headless["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert statefulset["metadata"]["name"] == f"{RELEASE}-discord"


def test_the_image_has_the_shell_and_the_user_the_pods_rely_on() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    runtime_base = re.findall(r"^FROM (\S+)", dockerfile, re.M)[-1]
    assert re.fullmatch(r"python:3\.\d+-slim", runtime_base)  # Debian: /bin/sh is dash
    uid = int(re.search(r"useradd [^\n]*--uid (\d+)", dockerfile).group(1))  # type: ignore[union-attr]
    for workload in (one(render(), "Deployment"), one(render(), "StatefulSet")):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["runAsNonRoot"] is True


# --- the contract with the application ---


def app_variables() -> set[str]:
    """Every environment variable Glimpse reads: secrets, GLIMPSE_ settings, GLIMPSE_CONFIG."""
    names = {name.upper() for name in Secrets.model_fields}
    names |= {f"GLIMPSE_{name.upper()}" for name in Settings.model_fields}
    names |= {f"GLIMPSE_DISCORD__{name.upper()}" for name in DiscordSettings.model_fields}
    names.add("GLIMPSE_CONFIG")  # read by load_settings itself
    return names


SHARD_VARIABLES = {"GLIMPSE_DISCORD__SHARD_COUNT", "GLIMPSE_DISCORD__SHARD_IDS"}


def test_the_secret_holds_the_variables_glimpse_reads_under_their_own_names() -> None:
    objects = render({"secrets": {"openrouterApiKey": "sk-or-v1-fake.chart.key"}})
    keys = set(one(objects, "Secret")["data"])
    assert keys <= app_variables()
    assert {"OPENROUTER_API_KEY", "GLIMPSE_STORE_URL", "DISCORD_TOKEN"} <= keys
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"} <= keys
    for workload in (one(objects, "Deployment"), one(objects, "StatefulSet")):
        for name, item in env_of(workload).items():
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref == {"name": RELEASE, "key": name}
                assert name in keys


def test_each_platform_gets_only_its_own_tokens() -> None:
    objects = render()
    slack, discord = env_of(one(objects, "Deployment")), env_of(one(objects, "StatefulSet"))
    assert "DISCORD_TOKEN" not in slack and {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"} <= set(
        slack
    )
    assert "DISCORD_TOKEN" in discord and not {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"} & set(discord)


def test_every_variable_the_pods_set_is_one_glimpse_reads() -> None:
    known = app_variables() | {"POD_NAME"}  # POD_NAME is the entrypoint's, for the ordinal
    for workload in (one(render(PRODUCTION), "Deployment"), one(render(PRODUCTION), "StatefulSet")):
        assert set(env_of(workload)) - SHARD_VARIABLES <= known


def test_the_shards_a_pod_computes_are_the_shards_glimpse_runs(
    fake_glimpse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "shard_ids" not in DiscordSettings.model_fields:
        pytest.skip("discord.shard_ids (issue 20, item 1: sharding) has not landed yet")
    names = {f"GLIMPSE_DISCORD__{name.upper()}" for name in DiscordSettings.model_fields}
    assert names >= SHARD_VARIABLES
    statefulset = one(render({"discord": {"replicas": 2, "shardsPerPod": 2}}), "StatefulSet")
    code, output = shards_of_pod(statefulset, 1, fake_glimpse)
    assert code == 0, output
    monkeypatch.setenv("GLIMPSE_DISCORD__SHARD_COUNT", "4")
    monkeypatch.setenv("GLIMPSE_DISCORD__SHARD_IDS", output.split()[0].removeprefix("shards="))
    settings = load_settings()
    assert settings.discord.shard_count == 4 and settings.discord.shard_ids == [2, 3]


def test_the_rendered_config_and_environment_load_as_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for values in (SCENARIOS["defaults"], PRODUCTION):
        objects = render(values)
        config = tmp_path / "glimpse.toml"
        config.write_text(one(objects, "ConfigMap")["data"]["glimpse.toml"], encoding="utf-8")
        plain = {
            name: item["value"]
            for name, item in env_of(one(objects, "Deployment")).items()
            if "value" in item and name.startswith("GLIMPSE_")
        }
        assert (
            plain.pop("GLIMPSE_CONFIG") == "/config/glimpse.toml"
        )  # where the ConfigMap is mounted
        with monkeypatch.context() as patch:
            for name, value in plain.items():
                patch.setenv(name, value)
            settings = load_settings(config)
        assert settings.health_port == int(plain["GLIMPSE_HEALTH_PORT"])
    assert (
        settings.model == "qwen/qwen2.5-vl-72b-instruct" and settings.max_concurrent_answers == 32
    )


def test_probes_ask_the_health_server_routes_on_its_port() -> None:
    routes = {
        resource.canonical
        for resource in HealthServer(None, port=0).app().router.resources()  # type: ignore[arg-type]
    }
    for workload in (one(render(), "Deployment"), one(render(), "StatefulSet")):
        spec = container(workload)
        ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
        assert ports["health"] == int(env_of(workload)["GLIMPSE_HEALTH_PORT"]["value"])
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert spec[probe]["httpGet"]["path"] in routes
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_slack_events_reach_the_pods_through_service_and_ingress() -> None:
    from adapters.slack import EVENTS_PATH

    objects = render(PRODUCTION)
    deployment = one(objects, "Deployment")
    spec = container(deployment)
    assert spec["args"][:4] == ["run", "--platform", "slack", "--http"]
    port = int(spec["args"][spec["args"].index("--port") + 1])
    assert {"name": "http", "containerPort": port, "protocol": "TCP"} in spec["ports"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    [service] = [o for o in objects if o["kind"] == "Service" and "clusterIP" not in o["spec"]]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"} in service["spec"][
        "ports"
    ]
    [path] = one(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"]
    assert (
        path["path"] == EVENTS_PATH
        and path["backend"]["service"]["name"] == service["metadata"]["name"]
    )


def test_autoscaling_owns_the_replica_count_and_budgets_select_the_pods() -> None:
    objects = render(PRODUCTION)
    deployment = one(objects, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA sets it; a helm upgrade must not reset it
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert container(deployment)["resources"]["requests"]["cpu"]  # Utilization needs a request
    workloads = [deployment, one(objects, "StatefulSet")]
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1


def test_pods_run_read_only_with_writable_tmp_and_data_and_outlast_the_drain() -> None:
    for workload in (one(render(), "Deployment"), one(render(), "StatefulSet")):
        pod = workload["spec"]["template"]["spec"]
        spec = container(workload)
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]  # the PDF reader's forkserver socket
        assert mounts[env_of(workload)["GLIMPSE_DATA_DIR"]["value"]] == "data"
        assert pod["terminationGracePeriodSeconds"] > Settings().shutdown_timeout_seconds
        assert pod["automountServiceAccountToken"] is False


# --- what the README says ---


def deep_merge(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = deep_merge(merged[key], value)
        merged[key] = value
    return merged


def test_the_readmes_install_command_renders_valid_objects() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    [command] = re.findall(
        r"^helm install glimpse deploy/helm/glimpse .*?[^\\]\n", readme, re.M | re.S
    )
    words = shlex.split(command.replace("\\\n", " "))
    values: dict[str, Any] = {}
    for flag, setting in zip(words, words[1:], strict=False):
        if flag == "--set":
            values = deep_merge(values, helm.parse_set_string(setting))
    assert values["secrets"] == {"create": False, "existingSecret": "glimpse-tokens"}
    objects = render(values)
    for item in objects:
        kubernetes_validate.validate(item, KUBE_VERSIONS[-1], strict=True)
    assert one(objects, "Ingress")["spec"]["rules"][0]["host"] == "glimpse.example.com"
    assert "https://glimpse.example.com/slack/events" in readme


def test_the_readmes_sharding_example(fake_glimpse: Path) -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    example = "with `--set discord.replicas=4 --set discord.shardsPerPod=2`, `glimpse-discord-1` runs shards 2 and 3 of 8"
    assert example in readme
    statefulset = one(render({"discord": {"replicas": 4, "shardsPerPod": 2}}), "StatefulSet")
    assert env_of(statefulset)["GLIMPSE_DISCORD__SHARD_COUNT"]["value"] == "8"
    code, output = shards_of_pod(statefulset, 1, fake_glimpse)
    assert (code, output.split()[0]) == (0, "shards=2,3")
