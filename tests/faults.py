"""Test helpers: a loopback HTTP proxy in front of OpenSearch that can inject faults or end TLS.

Only 127.0.0.1 is ever used. The proxy forwards each request to the node and lets a hook
replace the answer: a 429 for the whole request, a dropped connection, or a response whose
items are rewritten to 429 (the documents were indexed; the client must send them again).
"""

import base64
import http.client
import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class FaultProxy:
    """Forwards to `target` (http://127.0.0.1:PORT); `fault(n, path, size)` picks what to do with bulk request n.

    `fault` returns None (forward), "429" (answer 429), "drop" (close without answering), or
    "items-429" (forward, then report the first items as rejected with 429). With `max_body`, a
    bulk request larger than that many bytes is answered 413 with an empty body, as a cluster
    answers one over its `http.max_content_length`. `basic_auth` ("user:password") or
    `authorization` (the whole header) is required of every request; with `client_ca` (and `tls`)
    the TLS handshake requires a client certificate that CA signed.
    """

    def __init__(self, target: str, fault=None, tls=None, basic_auth=None, max_body=None, authorization=None,
                 client_ca=None):
        self.target = urlsplit(target)
        inner = fault or (lambda n, path, size: None)
        self.fault = inner if max_body is None else (
            lambda n, path, size: "413" if size > max_body else inner(n, path, size))
        self.counts = {"requests": 0, "429": 0, "drop": 0, "items-429": 0, "413": 0}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                expected = authorization or (basic_auth and "Basic " + base64.b64encode(basic_auth.encode()).decode())
                if expected and self.headers.get("Authorization") != expected:
                    return self._reply(401, b'{"error": "unauthorized", "status": 401}')
                with proxy.lock:
                    proxy.counts["requests"] += 1
                    n = proxy.counts["requests"]
                action = proxy.fault(n, self.path, len(body)) if self.path.startswith("/_bulk") else None
                if action:
                    with proxy.lock:
                        proxy.counts[action] += 1
                if action == "413":
                    return self._reply(413, b"")
                if action == "429":
                    return self._reply(429, b'{"error": {"type": "es_rejected_execution_exception"}, "status": 429}')
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if action == "items-429" and response.status == 200:
                    parsed = json.loads(data)
                    for item in parsed["items"][:3]:
                        result = next(iter(item.values()))
                        result.update(status=429, error={"type": "es_rejected_execution_exception", "reason": "injected"})
                    parsed["errors"] = True
                    data = json.dumps(parsed).encode()
                # The product header too: clients detect Elasticsearch by it.
                self._reply(response.status, data, response.getheader("Content-Type", "application/json"),
                            response.getheader("X-Elastic-Product"))
                conn.close()

            def _reply(self, status, data, content_type="application/json", product=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if product:
                    self.send_header("X-Elastic-Product", product)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            if client_ca:
                context.load_verify_locations(client_ca)
                context.verify_mode = ssl.CERT_REQUIRED
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def self_signed_certificate(folder: Path):
    """(cert, key) for CN=127.0.0.1 with the IP in subjectAltName, made with the openssl CLI."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return str(cert), str(key)
