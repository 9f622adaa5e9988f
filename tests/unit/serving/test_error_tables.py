from serving.errors import ErrorCode
from serving.http.errors import HTTP_STATUS


def test_http_table_covers_every_code() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert HTTP_STATUS[ErrorCode.INVALID_ARGUMENT] == 400
    assert HTTP_STATUS[ErrorCode.NOT_FOUND] == 404
    assert HTTP_STATUS[ErrorCode.UNAVAILABLE] == 503
    assert HTTP_STATUS[ErrorCode.UNAUTHENTICATED] == 401
    assert HTTP_STATUS[ErrorCode.PERMISSION_DENIED] == 403
    assert HTTP_STATUS[ErrorCode.REQUEST_TIMEOUT] == 408


def test_grpc_table_covers_every_code() -> None:
    import grpc

    from serving.grpc.errors import GRPC_STATUS

    assert set(GRPC_STATUS) == set(ErrorCode)
    assert GRPC_STATUS[ErrorCode.INVALID_ARGUMENT] == grpc.StatusCode.INVALID_ARGUMENT
    assert GRPC_STATUS[ErrorCode.NOT_FOUND] == grpc.StatusCode.NOT_FOUND
    assert GRPC_STATUS[ErrorCode.UNAVAILABLE] == grpc.StatusCode.UNAVAILABLE
    assert GRPC_STATUS[ErrorCode.UNSUPPORTED] == grpc.StatusCode.UNIMPLEMENTED
    assert GRPC_STATUS[ErrorCode.PAYLOAD_TOO_LARGE] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert GRPC_STATUS[ErrorCode.UNAUTHENTICATED] == grpc.StatusCode.UNAUTHENTICATED
    assert GRPC_STATUS[ErrorCode.PERMISSION_DENIED] == grpc.StatusCode.PERMISSION_DENIED
    assert GRPC_STATUS[ErrorCode.REQUEST_TIMEOUT] == grpc.StatusCode.DEADLINE_EXCEEDED
