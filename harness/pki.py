"""The embedded cluster's own CA, serving and client certificates, and service-account keys."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=2)
"""Drill clusters live minutes; short-lived certs make a leaked file worthless soon."""


def write_secret(path: Path, data: bytes) -> Path:
    """Write `data` to a new file readable by the owner only (0600), in a 0700 folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)
    return path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    sa_private: Path
    sa_public: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert.read_bytes()


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def create_pki(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
               service_ip: str = "10.0.0.1") -> ClusterPKI:
    """Make a CA, the apiserver's serving cert, an admin client cert and SA signing keys."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    ca_key = _key()
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("drdrill-ca"))
        .issuer_name(_name("drdrill-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(cn: str, org: str | None, server: bool) -> tuple[bytes, bytes]:
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            sans: list[x509.GeneralName] = []
            for h in (*hosts, service_ip, "kubernetes", "kubernetes.default",
                      "kubernetes.default.svc"):
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        else:
            usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    def pair(stem: str, cert: bytes, key: bytes) -> CertPair:
        return CertPair(write_secret(directory / f"{stem}.crt", cert),
                        write_secret(directory / f"{stem}.key", key))

    ca = pair("ca", ca_cert.public_bytes(serialization.Encoding.PEM), _pem_key(ca_key))
    apiserver = pair("apiserver", *issue("kube-apiserver", None, server=True))
    admin = pair("admin", *issue("drdrill-admin", "system:masters", server=False))

    # ECDSA: kube-apiserver signs tokens with ES256 just as well, and an RSA keygen costs the
    # harness a noticeable share of a drill's CPU time.
    sa_key = _key()
    sa_private = write_secret(directory / "sa.key", _pem_key(sa_key))
    sa_public = write_secret(directory / "sa.pub", sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return ClusterPKI(ca, apiserver, admin, sa_private, sa_public)


def kubeconfig_yaml(*, server: str, pki: ClusterPKI, name: str) -> str:
    """A kubeconfig that embeds the admin client cert by file path (never inline in logs)."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {name}\n  cluster:\n    server: {server}\n"
        f"    certificate-authority: {pki.ca.cert}\n"
        f"users:\n- name: {name}-admin\n  user:\n"
        f"    client-certificate: {pki.admin.cert}\n    client-key: {pki.admin.key}\n"
        f"contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}-admin\n"
        f"current-context: {name}\n"
    )
