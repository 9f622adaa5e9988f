from serving.errors import ErrorCode
from serving.http.errors import HTTP_STATUS


def test_http_table_covers_every_code() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert HTTP_STATUS[ErrorCode.INVALID_ARGUMENT] == 400
    assert HTTP_STATUS[ErrorCode.NOT_FOUND] == 404
    assert HTTP_STATUS[ErrorCode.UNAVAILABLE] == 503
