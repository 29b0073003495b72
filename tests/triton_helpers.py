"""Helpers for the Triton tests: small demo bundles, free loopback ports, a `defectrt serve` process that is
always stopped, and the skip when PyTriton or its stub environment is missing."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 40


def require_pytriton():
    pytest.importorskip("tritonclient.http", reason="tritonclient not installed (pip install 'defectrt[triton]')")
    pytest.importorskip("pytriton.triton", reason="nvidia-pytriton not installed (make install-triton)")
    from defectrt.serving import stub_env

    if stub_env.needed() and not stub_env.is_ready(stub_env.default_path()):
        pytest.skip("the Triton Python-backend environment is missing: run `defectrt serve --prepare`")


_BUNDLES = {}  # (demo, imgsz) -> path: built once per session, shared by the Triton test modules


def build_small_bundle(tmp_path_factory, demo="screw", imgsz=(192, 320)):
    """A demo model as a small dynamic-batch bundle (what a user serves, at a size 2 cores can load-test)."""
    pytest.importorskip("torch")
    from defectrt.export.bundle import build_bundle

    key = (demo, tuple(imgsz))
    if key not in _BUNDLES:
        out = os.path.join(str(tmp_path_factory.mktemp("triton-bundle")), demo + ".bundle")
        build_bundle("demo:" + demo, out, precision="fp32", imgsz=imgsz, dynamic_batch=True, max_batch=8)
        _BUNDLES[key] = out
    return _BUNDLES[key]


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class ServeProcess(object):
    """`defectrt serve BUNDLE` on 127.0.0.1 in a subprocess; `with` stops it (SIGTERM, then SIGKILL)."""

    def __init__(self, bundle, ports=None, extra=(), log_path=None):
        self.bundle = bundle
        self.ports = ports or free_ports(3)
        self.extra = list(extra)
        self.log_path = log_path
        self.proc = None

    @property
    def http(self):
        return "http://127.0.0.1:{}".format(self.ports[0])

    @property
    def grpc(self):
        return "grpc://127.0.0.1:{}".format(self.ports[1])

    @property
    def metrics(self):
        return "http://127.0.0.1:{}/metrics".format(self.ports[2])

    def start(self):
        cmd = [sys.executable, "-m", "defectrt", "serve", self.bundle, "--address", "127.0.0.1",
               "--http-port", str(self.ports[0]), "--grpc-port", str(self.ports[1]),
               "--metrics-port", str(self.ports[2]), "--exit-timeout-s", "5"] + self.extra
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=_env(),
                                     start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self):
        import urllib.request

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("defectrt serve exited with {} before it was ready (log: {})".format(
                    self.proc.returncode, self.log_path))
            try:
                with urllib.request.urlopen(self.http + "/v2/health/ready", timeout=2) as r:
                    if r.status == 200 and self._model_ready():
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError("defectrt serve was not ready after {} s (log: {})".format(READY_TIMEOUT_S, self.log_path))

    def _model_ready(self):
        import json
        import urllib.request

        with urllib.request.urlopen(self.http + "/v2/models/stats", timeout=2) as r:
            names = [m["name"] for m in json.load(r).get("model_stats", [])]
        return bool(names)

    def stop(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and PyTriton's children
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of the server's session left behind
        except (ProcessLookupError, PermissionError):
            pass
        code, self.proc = self.proc.returncode, None
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return code

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
