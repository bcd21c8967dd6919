"""HTTPS material: a lab CA and a server certificate made with pulumi-tls, or the
operator's own certificate; installed into the host's TLS folder for the proxy.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pulumi
import pulumi_tls as tls

from infra.host import Host
from infra.settings import Settings, TlsMode

TYPE = "juvini:index:Tls"

SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
CA_CERT_FILE = "ca.crt"

_SERVER_USES = ["key_encipherment", "digital_signature", "server_auth"]
_CA_USES = ["cert_signing", "crl_signing", "digital_signature"]


class Tls(pulumi.ComponentResource):
    """The lab's certificates, and their files in the host's TLS folder."""

    ca_certificate: pulumi.Output[str]
    server_certificate: pulumi.Output[str]
    server_private_key: pulumi.Output[str]

    def __init__(self, name: str, settings: Settings, host: Host, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = settings.tls

        if cfg.mode is TlsMode.SELF_SIGNED:
            ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            ca_cert = tls.SelfSignedCert(
                f"{name}-ca",
                private_key_pem=ca_key.private_key_pem,
                is_ca_certificate=True,
                set_subject_key_id=True,
                validity_period_hours=cfg.ca_validity_days * 24,
                allowed_uses=_CA_USES,
                subject=tls.SelfSignedCertSubjectArgs(
                    common_name=f"{cfg.organization} CA", organization=cfg.organization
                ),
                opts=child,
            )
            server_key = tls.PrivateKey(f"{name}-server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            request = tls.CertRequest(
                f"{name}-server-csr",
                private_key_pem=server_key.private_key_pem,
                dns_names=cfg.dns_names,
                ip_addresses=cfg.ip_addresses,
                subject=tls.CertRequestSubjectArgs(
                    common_name=(cfg.dns_names or cfg.ip_addresses)[0], organization=cfg.organization
                ),
                opts=child,
            )
            server_cert = tls.LocallySignedCert(
                f"{name}-server",
                cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem,
                ca_cert_pem=ca_cert.cert_pem,
                validity_period_hours=cfg.validity_days * 24,
                early_renewal_hours=24 * 30,
                allowed_uses=_SERVER_USES,
                set_subject_key_id=True,
                opts=child,
            )
            self.ca_certificate = ca_cert.cert_pem
            # The proxy serves the chain, so clients that only trust the CA can verify it.
            self.server_certificate = pulumi.Output.concat(server_cert.cert_pem, ca_cert.cert_pem)
            self.server_private_key = pulumi.Output.secret(server_key.private_key_pem)
        else:
            if cfg.certificate is None or cfg.private_key is None or cfg.ca_certificate is None:
                raise ValueError("tls mode 'provided' without certificate, privateKey and caCertificate")
            self.ca_certificate = pulumi.Output.from_input(cfg.ca_certificate)
            self.server_certificate = pulumi.Output.from_input(cfg.certificate)
            self.server_private_key = pulumi.Output.secret(cfg.private_key.get_secret_value())

        tls_dir = PurePosixPath(settings.paths.tls_dir)
        self.server_certificate_path = str(tls_dir / SERVER_CERT_FILE)
        self.server_key_path = str(tls_dir / SERVER_KEY_FILE)
        self.ca_certificate_path = str(tls_dir / CA_CERT_FILE)
        self.files = [
            host.file(f"{name}-server-cert-file", self.server_certificate_path, self.server_certificate, "0644", child),
            host.file(f"{name}-server-key-file", self.server_key_path, self.server_private_key, "0600", child),
            host.file(f"{name}-ca-cert-file", self.ca_certificate_path, self.ca_certificate, "0644", child),
        ]
        self.register_outputs({"caCertificate": self.ca_certificate, "serverCertificate": self.server_certificate})
