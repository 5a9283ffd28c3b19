"""A throw-away PKI for OpenFlow over TLS in a testbed, made with openssl.

    pki = Pki(os.path.join(rundir, "pki"))
    key, cert = pki.issue("nve1", "0000000000000001")     # CN = the dpid
    key, cert = pki.self_signed("rogue", "0000000000000001")

One CA per run (``ca.crt``), the controller's certificate (``controller``,
CN ``nvo3-controller``) and, on demand, switch certificates whose subject
CN is what the test says (the app wants an NVE's datapath id, 16 hex
digits: southbound/ofguard.py), optionally with DNS subjectAltNames.  Why
openssl and not ``ovs-pki``: ovs-pki's certificates name ``<name>
id:<uuid>``, and the CN here must be the datapath id.  Keys are RSA 2048
(a few tens of milliseconds each); nothing leaves the run directory.
"""

from __future__ import annotations

import os
import subprocess
from typing import Iterable, Tuple

DAYS = "2"


class PkiError(RuntimeError):
    """openssl failed."""


def _openssl(*args: str, cwd: str) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=60, check=False)
    if res.returncode != 0:
        raise PkiError("openssl %s: %s" % (" ".join(args[:2]), res.stderr.strip()[-500:]))


class Pki:
    """A CA and the certificates it signed, in ``directory``."""

    def __init__(self, directory: str):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o700)
        self.ca_cert = os.path.join(self.dir, "ca.crt")
        self.ca_key = os.path.join(self.dir, "ca.key")
        if not os.path.exists(self.ca_cert):
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key,
                     "-out", self.ca_cert, "-days", DAYS, "-subj", "/O=nvo3-testbed/CN=nvo3 test CA",
                     cwd=self.dir)
        self.controller_key, self.controller_cert = self.issue("controller", "nvo3-controller")

    def paths(self, name: str) -> Tuple[str, str]:
        """(key, certificate) paths of ``name``."""
        return os.path.join(self.dir, name + ".key"), os.path.join(self.dir, name + ".crt")

    def issue(self, name: str, cn: str, dns: Iterable[str] = (),
              ips: Iterable[str] = ()) -> Tuple[str, str]:
        """A key and a certificate the CA signed, subject CN ``cn`` (and
        subjectAltNames: DNS names ``dns``, addresses ``ips``); made once
        per name."""
        key, cert = self.paths(name)
        if os.path.exists(cert):
            return key, cert
        csr = os.path.join(self.dir, name + ".csr")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                 "-subj", "/O=nvo3-testbed/CN=%s" % cn, cwd=self.dir)
        args = ["x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                "-CAcreateserial", "-out", cert, "-days", DAYS]
        alt = ["DNS:" + d for d in dns] + ["IP:" + i for i in ips]
        if alt:
            ext = os.path.join(self.dir, name + ".ext")
            with open(ext, "w", encoding="ascii") as fh:
                fh.write("subjectAltName=%s\n" % ",".join(alt))
            args += ["-extfile", ext]
        _openssl(*args, cwd=self.dir)
        return key, cert

    def self_signed(self, name: str, cn: str) -> Tuple[str, str]:
        """A key and a certificate no CA signed (what a forger has)."""
        key, cert = self.paths(name)
        if not os.path.exists(cert):
            _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                     cert, "-days", DAYS, "-subj", "/O=nvo3-rogue/CN=%s" % cn, cwd=self.dir)
        return key, cert

    def osken_args(self) -> list:
        """osken-manager's TLS options for this PKI (client certificates
        required, checked against the CA)."""
        return ["--ctl-privkey", self.controller_key, "--ctl-cert", self.controller_cert,
                "--ca-certs", self.ca_cert]
