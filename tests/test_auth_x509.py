"""Legacy x509: a server with mutual TLS maps a client certificate's subject to a user (off by
default). Certificates are made here: a CA, the server's (for 127.0.0.1) and two clients'."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, queue_service_pb2, queue_service_pb2_grpc
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import StaticToken
from tools.cluster import IdentityHandle, fresh_database, start_server

ALICE_SUBJECT = [(NameOID.DOMAIN_COMPONENT, "org"), (NameOID.DOMAIN_COMPONENT, "panda"),
                 (NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"), (NameOID.COMMON_NAME, "Alice Legacy")]
STRANGER_SUBJECT = [(NameOID.COMMON_NAME, "Nobody Known")]


def _name(parts: list[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _issue(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
           signer: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name([(NameOID.COMMON_NAME, "PanDA mesh test CA")])
    ca = _issue(ca_name, ca_name, ca_key, ca_key, ca=True)
    files: dict[str, Path] = {}
    files["ca"], _ = _write(tmp_path / "ca", ca, ca_key)
    for label, subject, server in (("server", [(NameOID.COMMON_NAME, "127.0.0.1")], True),
                                   ("alice", ALICE_SUBJECT, False), ("stranger", STRANGER_SUBJECT, False)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{label}_cert"], files[f"{label}_key"] = _write(
            tmp_path / label, _issue(_name(subject), ca_name, key, ca_key, server=server), key)
    # The map names Alice in the grid's slash form; TLS reports RFC 2253: both must match.
    files["map"] = tmp_path / "x509-users.yaml"
    files["map"].write_text('"/DC=org/DC=panda/OU=Users/CN=Alice Legacy": {user: alice, groups: [/panda]}\n')
    return files


def _tls(pki: dict[str, Path], who: str | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].read_bytes(),
        private_key=pki[f"{who}_key"].read_bytes() if who else None,
        certificate_chain=pki[f"{who}_cert"].read_bytes() if who else None,
    )


def test_a_mapped_certificate_is_its_user_and_others_are_refused(
    pki: dict[str, Path], tmp_path: Path, identity: IdentityHandle
) -> None:
    url = fresh_database("sqlite", tmp_path, "")
    server = start_server(tmp_path, url, {
        **identity.trust_env(), "PANDA_TLS_CERT_FILE": str(pki["server_cert"]),
        "PANDA_TLS_KEY_FILE": str(pki["server_key"]), "PANDA_TLS_CLIENT_CA_FILE": str(pki["ca"]),
        "PANDA_X509_USER_MAP_FILE": str(pki["map"]),
    }, tls=_tls(pki, "alice"))
    try:
        with sync_channel(server.address, tls=_tls(pki, "alice")) as channel:
            queue_service_pb2_grpc.QueueServiceStub(channel).ListQueues(
                queue_service_pb2.ListQueuesRequest(), timeout=10)
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            listed = jobs.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10)
            assert listed.total_size == 0
            with pytest.raises(grpc.RpcError) as refused:  # a user still cannot create queues
                jobs.SubmitJobs(job_service_pb2.SubmitJobsRequest(
                    jobs=[job_pb2.Job(queue="nowhere", command=["true"])], request_id=uuid.uuid4().hex), timeout=10)
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND  # it got past the check, as alice

        # A certificate the map does not know: no identity.
        with sync_channel(server.address, tls=_tls(pki, "stranger")) as channel, \
                pytest.raises(grpc.RpcError) as refused:
            job_service_pb2_grpc.JobServiceStub(channel).ListJobs(job_service_pb2.ListJobsRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "not mapped to a user" in refused.value.details()

        # The same unknown certificate with a token: the token decides who calls.
        with sync_channel(server.address, StaticToken(identity.token("bob")), tls=_tls(pki, "stranger")) as channel:
            job_service_pb2_grpc.JobServiceStub(channel).ListJobs(job_service_pb2.ListJobsRequest(), timeout=10)

        # No certificate at all: the TLS handshake itself fails.
        with sync_channel(server.address, tls=_tls(pki, None)) as channel, pytest.raises(grpc.RpcError) as refused:
            job_service_pb2_grpc.JobServiceStub(channel).ListJobs(job_service_pb2.ListJobsRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop()
