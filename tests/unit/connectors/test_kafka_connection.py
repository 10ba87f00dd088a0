"""Kafka security in one place (issue 10): ``KafkaConnection`` builds the aiokafka arguments and Faust's credentials
for every protocol and mechanism, refuses combinations that cannot work, and never shows a secret.

The real handshakes (SASL_SSL with SCRAM against a broker, the CLI's preflight) are in
``tests/integration/test_kafka_security.py``; these tests need no network.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
import ssl
import sys
import types
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import faust
import pytest
from aiokafka.abc import AbstractTokenProvider
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr, ValidationError

from connectors import kafka as kafka_module
from connectors.kafka import KafkaConnection, KafkaUnusable, MskIamTokenError, MskIamTokenProvider, check_connection
from streams.app import build_app
from streams.cli.shell import ConfigurationError, load_settings
from streams.settings import KafkaSettings, Settings
from tests.support.tls import CLIENT_KEY_PASSWORD, Pki, make_pki

PASSWORD = "s3cr3t-Pa55word"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def scram(pki: Pki, mechanism: str = "SCRAM-SHA-512", **overrides: object) -> KafkaConnection:
    values: dict[str, object] = {
        "bootstrap_servers": "b1:9096,b2:9096",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_username": "alice",
        "sasl_password": PASSWORD,
        "ssl_cafile": pki.ca_cert,
    }
    values.update(overrides)
    return KafkaConnection(**values)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static AWS credentials from the environment: the signer needs nothing else (no metadata service, no STS)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)


# --- client_kwargs() per protocol and mechanism ------------------------------------------------------------------


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    connection = KafkaConnection(bootstrap_servers="k1:9092, k2:9092")
    assert connection.client_kwargs() == {"bootstrap_servers": ["k1:9092", "k2:9092"], "security_protocol": "PLAINTEXT"}
    assert connection.faust_credentials() is None
    assert connection.faust_broker() == ["kafka://k1:9092", "kafka://k2:9092"]


def test_ssl_verifies_the_broker_against_the_configured_ca(pki: Pki) -> None:
    connection = KafkaConnection(security_protocol="SSL", ssl_cafile=pki.ca_cert)
    kwargs = connection.client_kwargs()
    assert set(kwargs) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "solicit test CA"),),)]


def test_ssl_without_a_ca_file_trusts_the_system_cas() -> None:
    context = KafkaConnection(security_protocol="SSL").client_kwargs()["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_hostname_checking_can_be_turned_off_but_the_chain_is_still_verified(pki: Pki) -> None:
    connection = KafkaConnection(security_protocol="SSL", ssl_cafile=pki.ca_cert, ssl_check_hostname=False)
    context = connection.client_kwargs()["ssl_context"]
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_mutual_tls_loads_the_client_certificate_and_its_encrypted_key(pki: Pki) -> None:
    connection = KafkaConnection(
        security_protocol="SSL",
        ssl_cafile=pki.ca_cert,
        ssl_certfile=pki.client_cert,
        ssl_keyfile=pki.client_key,
        ssl_key_password=CLIENT_KEY_PASSWORD,
    )
    assert isinstance(connection.client_kwargs()["ssl_context"], ssl.SSLContext)


async def test_a_wrong_client_key_password_is_one_line_without_the_password(pki: Pki) -> None:
    connection = KafkaConnection(
        security_protocol="SSL",
        ssl_certfile=pki.client_cert,
        ssl_keyfile=pki.client_key,
        ssl_key_password=PASSWORD,
    )
    with pytest.raises(KafkaUnusable) as raised:
        await check_connection(connection)  # fails building the TLS context, before any connection
    line = str(raised.value)
    assert line.startswith("Kafka: the TLS files cannot be used (")
    assert "\n" not in line and PASSWORD not in line


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_a_password_mechanism(pki: Pki, mechanism: str) -> None:
    kwargs = scram(pki, mechanism).client_kwargs()
    assert kwargs["bootstrap_servers"] == ["b1:9096", "b2:9096"]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["sasl_plain_username"] == "alice"
    assert kwargs["sasl_plain_password"] == PASSWORD  # aiokafka needs it in clear; it is never logged
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert "sasl_oauth_token_provider" not in kwargs


def test_sasl_plaintext_has_no_tls_context() -> None:
    connection = KafkaConnection(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice",
        sasl_password=PASSWORD,
    )
    kwargs = connection.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_PLAINTEXT"
    assert "ssl_context" not in kwargs
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"


def test_aws_msk_iam_is_oauthbearer_with_a_token_provider(pki: Pki) -> None:
    connection = KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM", msk_region="eu-west-1")
    kwargs = connection.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "OAUTHBEARER"
    provider = kwargs["sasl_oauth_token_provider"]
    assert isinstance(provider, MskIamTokenProvider) and isinstance(provider, AbstractTokenProvider)
    assert provider.region == "eu-west-1"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert "sasl_plain_password" not in kwargs


async def test_the_msk_token_is_signed_by_awss_signer_and_reused_until_it_nears_expiry(aws_credentials: None) -> None:
    provider = MskIamTokenProvider("us-east-1")
    token = await provider.token()
    url = unquote(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    assert url.startswith("https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster:Connect")
    assert "X-Amz-Signature=" in url and "AKIDEXAMPLE" in url
    assert await provider.token() == token  # cached, not signed per connection
    provider._expires_at = 0.0  # as if it had expired
    assert isinstance(await provider.token(), str)
    assert token not in repr(provider) and repr(provider) == "<MskIamTokenProvider region=us-east-1>"


async def test_an_msk_signing_failure_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    failing = types.ModuleType("aws_msk_iam_sasl_signer")

    def generate_auth_token(region: str) -> tuple[str, int]:
        raise RuntimeError("Unable to locate credentials")

    failing.MSKAuthTokenProvider = types.SimpleNamespace(generate_auth_token=generate_auth_token)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", failing)
    with pytest.raises(MskIamTokenError, match=r"could not sign an MSK IAM token in us-east-1: Unable to locate"):
        await MskIamTokenProvider("us-east-1").token()


def test_without_the_msk_extra_aws_msk_iam_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == kafka_module.MSK_SIGNER_MODULE else real(name, *args),
    )
    with pytest.raises(ValidationError, match=r"pip install 'solicit\[msk\]'"):
        KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM", msk_region="us-east-1")


# --- Faust gets the same connection ---------------------------------------------------------------------------------


def _auth_without_context(credentials: Any) -> dict[str, object]:
    auth = dict(credentials_to_aiokafka_auth(credentials))  # what Faust hands to its aiokafka clients
    assert isinstance(auth.pop("ssl_context", None), ssl.SSLContext | None)
    return auth


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_faust_gets_sasl_credentials_that_become_the_same_aiokafka_arguments(pki: Pki, mechanism: str) -> None:
    connection = scram(pki, mechanism)
    credentials = connection.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    ours = {k: v for k, v in connection.client_kwargs().items() if k not in ("bootstrap_servers", "ssl_context")}
    assert _auth_without_context(credentials) == ours
    assert PASSWORD not in repr(credentials)


def test_faust_over_sasl_plaintext_has_no_tls() -> None:
    connection = KafkaConnection(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u", sasl_password=PASSWORD
    )
    auth = credentials_to_aiokafka_auth(connection.faust_credentials())
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["ssl_context"] is None


def test_faust_gets_tls_credentials_for_ssl(pki: Pki) -> None:
    credentials = KafkaConnection(security_protocol="SSL", ssl_cafile=pki.ca_cert).faust_credentials()
    assert isinstance(credentials, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SSL" and isinstance(auth["ssl_context"], ssl.SSLContext)


def test_faust_gets_oauth_credentials_for_msk_iam() -> None:
    connection = KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM", msk_region="us-east-1")
    credentials = connection.faust_credentials()
    assert isinstance(credentials, faust.OAuthCredentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(auth["sasl_oauth_token_provider"], MskIamTokenProvider)


def test_the_worker_app_is_built_with_the_connections_credentials(pki: Pki, tmp_path: Path) -> None:
    settings = Settings(
        kafka=KafkaSettings(**scram(pki).model_dump()),
        worker={"data_dir": tmp_path, "id": "w1"},
    )
    app = build_app(settings)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "alice" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert [str(url) for url in app.conf.broker] == ["kafka://b1:9096", "kafka://b2:9096"]


# --- settings from the environment, validation, secrets ------------------------------------------------------------


def test_the_settings_come_from_solicit_kafka_variables_in_either_case(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOLICIT_KAFKA__BOOTSTRAP_SERVERS", "b1:9096")
    monkeypatch.setenv("SOLICIT_KAFKA__SECURITY_PROTOCOL", "sasl_ssl")
    monkeypatch.setenv("SOLICIT_KAFKA__SASL_MECHANISM", "scram-sha-512")
    monkeypatch.setenv("SOLICIT_KAFKA__SASL_USERNAME", "alice")
    monkeypatch.setenv("SOLICIT_KAFKA__SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("SOLICIT_KAFKA__SSL_CAFILE", str(pki.ca_cert))
    monkeypatch.setenv("SOLICIT_KAFKA__SSL_CHECK_HOSTNAME", "false")
    settings = Settings()
    kafka = settings.kafka
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert kafka.sasl_password.get_secret_value() == PASSWORD
    assert kafka.ssl_cafile == pki.ca_cert and kafka.ssl_check_hostname is False
    assert kafka.client_kwargs()["sasl_plain_password"] == PASSWORD
    for shown in (repr(settings), str(settings), repr(kafka), str(kafka), settings.model_dump_json()):
        assert PASSWORD not in shown
    assert "SecretStr('**********')" in repr(kafka)


def test_an_empty_path_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLICIT_KAFKA__SSL_CAFILE", "")
    assert Settings().kafka.ssl_cafile is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "security_protocol SASL_SSL needs sasl_mechanism (PLAIN, SCRAM-SHA-256"),
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u"}, "sasl_mechanism, sasl_username set, but security_protocol"),
        ({"sasl_password": PASSWORD}, "sasl_password set, but security_protocol PLAINTEXT uses no SASL"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "alice"},
            "sasl_mechanism SCRAM-SHA-512 needs sasl_password",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "AWS_MSK_IAM", "msk_region": "us-east-1"},
            "AWS_MSK_IAM needs security_protocol SASL_SSL",
        ),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "AWS_MSK_IAM"}, "AWS_MSK_IAM needs msk_region"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"ssl_check_hostname": False, "ssl_key_password": PASSWORD}, "ssl_key_password set, but security_protocol"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "ssl_cafile"),
    ],
)
def test_combinations_that_cannot_work_are_refused_by_name(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")) as raised:
        KafkaConnection(**values)
    shown = str(raised.value)
    assert PASSWORD not in shown


def test_cafile_without_tls_and_a_key_without_its_certificate_are_refused(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="ssl_cafile set, but security_protocol PLAINTEXT uses no TLS"):
        KafkaConnection(ssl_cafile=pki.ca_cert)
    with pytest.raises(ValidationError, match="ssl_keyfile set without ssl_certfile"):
        KafkaConnection(security_protocol="SSL", ssl_keyfile=pki.client_key)


def test_a_bad_kafka_setting_is_one_line_per_problem_naming_the_variable_never_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOLICIT_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SOLICIT_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SOLICIT_KAFKA__SASL_PASSWORD", PASSWORD)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    (line,) = raised.value.lines
    assert line.startswith("SOLICIT_KAFKA: ") and "sasl_mechanism SCRAM-SHA-512 needs sasl_username" in line
    assert PASSWORD not in line


def test_the_password_never_shows_in_messages_that_name_the_login(pki: Pki) -> None:
    connection = scram(pki)
    assert connection.describe_login() == "SASL SCRAM-SHA-512 as user 'alice'"
    msk = KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM", msk_region="us-east-1")
    assert msk.describe_login() == "SASL AWS_MSK_IAM in us-east-1"
    assert PASSWORD not in repr(connection.model_dump()) and PASSWORD not in connection.model_dump_json()
    assert isinstance(connection.sasl_password, SecretStr)


# --- every aiokafka client of the product is built from client_kwargs() ----------------------------------------------

_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}


def _builds_from_client_kwargs(call: ast.Call) -> bool:
    for keyword in call.keywords:
        value = keyword.value
        if (
            keyword.arg is None
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "client_kwargs"
        ):
            return True
    return False


def test_every_aiokafka_client_in_the_product_takes_the_connections_arguments() -> None:
    offenders: list[str] = []
    clients = 0
    for package in ("statemachine", "connectors", "streams"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name in _CLIENTS:
                    clients += 1
                    if not _builds_from_client_kwargs(node):
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert clients >= 4  # producer, admin, the groupless reader, the command feed
    assert offenders == [], "build aiokafka clients with **connection.client_kwargs()"


def test_a_settings_error_never_quotes_the_password_either() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(kafka={"sasl_password": PASSWORD})
    assert "sasl_password set, but security_protocol PLAINTEXT uses no SASL" in str(raised.value)
    assert PASSWORD not in str(raised.value) and PASSWORD not in repr(raised.value)
