from __future__ import annotations

import subprocess
import sys


def test_importing_the_agent_loads_no_serving_stack() -> None:
    code = (
        "import sys, edge_agent, edge_agent._agent, edge_agent._cli, edge_agent._fleet;"
        "heavy = ('serving', 'onnxruntime', 'grpc', 'starlette', 'uvicorn', 'numpy');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
