from __future__ import annotations

import subprocess
import sys


def test_importing_the_client_pulls_in_no_server_stack() -> None:
    code = (
        "import sys, registry_client\n"
        "from registry_client import open_registry, Puller, LocalRegistry\n"
        "heavy = ['serving', 'onnxruntime', 'grpc', 'numpy', 'starlette', 'uvicorn']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
