from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.wrk import parse_wrk_output, write_script

# wrk 4.1.0 with the suite's Lua script, captured against a local server
LUA_RUN = """\
Running 1s test @ http://127.0.0.1:18931/v2/models/x/infer
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    95.27us  252.57us   4.22ms   98.43%
    Req/Sec    28.39k     3.93k   31.28k    72.73%
  Latency Distribution
     50%   63.00us
     75%   75.00us
     90%   92.00us
     99%    1.19ms
  62082 requests in 1.10s, 4.85MB read
Requests/sec:  56452.35
Transfer/sec:      4.41MB
SLUICE_WRK_SUMMARY requests=62082 duration_us=1099724 status=0 connect=0 read=0 write=0 timeout=0
SLUICE_WRK_PERCENTILE 50 63
SLUICE_WRK_PERCENTILE 90 92
SLUICE_WRK_PERCENTILE 99 1188
SLUICE_WRK_PERCENTILE 99.9 3666
SLUICE_WRK_LATENCY mean=95.268497 max=4225
"""

# plain `wrk --latency` (no script), with errors
PLAIN_RUN = """\
Running 1s test @ http://127.0.0.1:18931/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    57.59us   17.21us 361.00us   79.08%
    Req/Sec    24.36k    15.51k   33.54k    75.00%
  Latency Distribution
     50%   55.00us
     75%   65.00us
     90%   76.00us
     99%    1.09ms
  9649 requests in 1.10s, 772.67KB read
  Socket errors: connect 0, read 2, write 41, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:   8773.41
Transfer/sec:    702.56KB
"""


def test_parses_the_lua_summary() -> None:
    r = parse_wrk_output(LUA_RUN)
    assert r.requests == 62082
    assert r.duration_s == pytest.approx(1.099724)
    assert r.errors == 0
    assert r.throughput == pytest.approx(62082 / 1.099724)
    assert (r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms) == (0.063, 0.092, 1.188, 3.666)
    assert r.mean_ms == pytest.approx(0.095268497)
    assert r.max_ms == pytest.approx(4.225)


def test_parses_the_standard_output_with_errors() -> None:
    r = parse_wrk_output(PLAIN_RUN)
    assert r.requests == 9649
    assert r.duration_s == pytest.approx(1.10)
    assert r.errors == 7 + 2 + 41
    assert r.throughput == pytest.approx((9649 - 50) / 1.10)
    assert r.p50_ms == pytest.approx(0.055)
    assert r.p90_ms == pytest.approx(0.076)
    assert r.p99_ms == pytest.approx(1.09)
    assert r.p999_ms is None
    assert r.mean_ms == pytest.approx(0.05759)
    assert r.max_ms == pytest.approx(0.361)


def test_rejects_output_without_a_summary() -> None:
    with pytest.raises(ValueError):
        parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_script_sets_method_body_file_and_headers(tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    script = write_script(
        tmp_path / "s.lua",
        body,
        {"Content-Type": "application/octet-stream", "Content-Length": "9", "X-A": "1"},
    ).read_text()
    assert 'wrk.method = "POST"' in script
    assert f"[==[{body}]==]" in script
    assert "wrk.headers[ [==[Content-Type]==] ] = [==[application/octet-stream]==]" in script
    assert "Content-Length" not in script  # wrk computes it from the body
    assert "done = function(summary, latency, requests)" in script
