"""One face over tritonclient's HTTP and gRPC clients, so shared cases run on both protocols.

Everything comes back in the HTTP client's JSON shapes (ints as ints), so one
assertion checks both front ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf import json_format

from serving.config import config_to_json

__all__ = ["PROTOCOLS", "ProtocolClient"]

PROTOCOLS = ["http", "grpc"]
# The HTTP status and gRPC status code each Sluice error shows as.
_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}


def _ints(obj: Any, key: str = "") -> Any:
    """Protobuf JSON prints 64-bit ints as strings; the HTTP API prints numbers."""
    if isinstance(obj, dict):
        return {k: _ints(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ints(v, key) for v in obj]
    if (
        isinstance(obj, str)
        and key not in ("name", "version", "versions", "key", "model_version", "id")
        and (obj.lstrip("-").isdigit())
    ):
        return int(obj)
    return obj


class ProtocolClient:
    def __init__(self, protocol: str, http_url: str, grpc_url: str) -> None:
        self.protocol = protocol
        self.grpc = protocol == "grpc"
        self.module: Any = grpcclient if self.grpc else httpclient
        self.raw: Any = self.module.InferenceServerClient(grpc_url if self.grpc else http_url)

    def close(self) -> None:
        self.raw.close()

    def input(self, name: str, data: np.ndarray, datatype: str, binary: bool = True) -> Any:
        inp = self.module.InferInput(name, list(data.shape), datatype)
        if self.grpc:
            inp.set_data_from_numpy(data)  # always raw_input_contents
        else:
            inp.set_data_from_numpy(data, binary_data=binary)
        return inp

    def output(self, name: str, binary: bool = True) -> Any:
        if self.grpc:
            return self.module.InferRequestedOutput(name)
        return self.module.InferRequestedOutput(name, binary_data=binary)

    def infer(self, model: str, inputs: list[Any], **kwargs: Any) -> Any:
        return self.raw.infer(model, inputs, **kwargs)

    def response(self, result: Any) -> dict[str, Any]:
        if self.grpc:
            return _ints(result.get_response(as_json=True))
        return result.get_response()

    def _json(self, method: str, *args: Any) -> Any:
        fn = getattr(self.raw, method)
        return _ints(fn(*args, as_json=True)) if self.grpc else fn(*args)

    def server_metadata(self) -> dict[str, Any]:
        return self._json("get_server_metadata")

    def model_metadata(self, model: str, version: str = "") -> dict[str, Any]:
        return self._json("get_model_metadata", model, version)

    def model_config(self, model: str, version: str = "") -> dict[str, Any]:
        if self.grpc:
            # Same message class as Sluice's: render it as the HTTP API does.
            return config_to_json(self.raw.get_model_config(model, version).config)
        return self.raw.get_model_config(model, version)

    def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        if self.grpc:
            msg = self.raw.get_inference_statistics(model, version)
            as_dict = json_format.MessageToDict(
                msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            return _ints(as_dict)
        return self.raw.get_inference_statistics(model, version)

    def index(self) -> list[dict[str, Any]]:
        if self.grpc:
            return _ints(self.raw.get_model_repository_index(as_json=True)).get("models", [])
        return self.raw.get_model_repository_index()

    def shm_status(self, name: str = "") -> list[dict[str, Any]]:
        if self.grpc:
            regions = _ints(self.raw.get_system_shared_memory_status(name, as_json=True))
            return sorted(regions.get("regions", {}).values(), key=lambda r: r["name"])
        return self.raw.get_system_shared_memory_status(name)

    @staticmethod
    def status_of(http_status: int) -> str:
        return _STATUS[http_status]

    def expect_status(self, exc: Exception, http_status: int) -> None:
        status = str(exc.status())  # type: ignore[attr-defined]
        if self.grpc:
            assert status == f"StatusCode.{_STATUS[http_status]}", status
        else:
            assert status == str(http_status), status
