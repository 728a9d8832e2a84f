"""A command function: any program that serves HTTP on $PORT. Echoes what it received."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        payload = json.dumps({
            "method": self.command,
            "path": self.path,
            "bodyLength": len(body),
            "sandboxId": os.environ.get("BATON_SANDBOX_ID"),
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((os.environ.get("BATON_HOST", "127.0.0.1"), int(os.environ["PORT"])), Echo)
    server.serve_forever()
