"""A real list server on 127.0.0.1 for the list URL tests: plain HTTP, or HTTPS with
certificates made at test time by the ``openssl`` command (a private CA of the test's
own, never one the system trusts)."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ListServer:
    """Serves one list file, with ETag and Last-Modified, answering conditional
    requests with 304; HTTPS when given ``tls`` (whose certificate ``use`` swaps)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.body = b""
        self.etag = ""
        self.requests: list[dict[str, str]] = []
        self.redirect_to: str | None = None
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append({k.lower(): v for k, v in self.headers.items()})
                if owner.redirect_to is not None:
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("If-None-Match") == owner.etag:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", owner.etag)
                self.send_header("Last-Modified", "Sun, 01 Nov 2026 10:00:00 GMT")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.tls = tls
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "http" if tls is None else "https"
        self.base = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, terms: list[str], list_id: str = "fleet") -> str:
        quoted = ", ".join(f'"{t}"' for t in terms)
        self.body = f'id = "{list_id}"\ncategory = "fleet"\nterms = [{quoted}]\n'.encode()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:12] + '"'
        return hashlib.sha256(self.body).hexdigest()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A server context presenting this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


class CertificateAuthority:
    """A private CA made with the openssl command, in ``directory``."""

    def __init__(self, directory: Path, name: str) -> None:
        if shutil.which("openssl") is None:
            raise RuntimeError("the openssl command is needed (Debian: apt install openssl)")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.cert = directory / f"{name}-ca.pem"
        self.key = directory / f"{name}-ca.key"
        _openssl(
            "req", "-x509", *_EC_KEY, "-nodes", "-days", "2",
            "-keyout", self.key, "-out", self.cert,
            "-subj", f"/CN={name} test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def issue(self, name: str, *, san: str = "IP:127.0.0.1") -> Certificate:
        """A server certificate for ``san`` (an openssl subjectAltName value)."""
        key = self.directory / f"{name}.key"
        request = self.directory / f"{name}.csr"
        cert = self.directory / f"{name}.pem"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(
            f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req", *_EC_KEY, "-nodes", "-keyout", key, "-out", request, "-subj", f"/CN={name}"
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", request, "-CA", self.cert, "-CAkey", self.key,
            "-CAcreateserial", "-days", "2", "-out", cert, "-extfile", extensions,
        )  # fmt: skip
        return Certificate(cert, key)


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
