from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.metrics import AggregatedMetrics
from serving.settings import ControlMode, Settings
from serving.workers import RestartBackoff, describe_exit, shared_listener, worker_settings


def _settings(tmp_path: Path, **kwargs: object) -> Settings:
    return Settings(model_repository=tmp_path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cores", "workers", "each"), [(2, 2, 1), (8, 3, 2), (16, 4, 4), (1, 4, 1), (3, 2, 1)]
)
def test_each_worker_gets_its_share_of_the_cores_and_the_shared_ports(
    tmp_path: Path, cores: int, workers: int, each: int
) -> None:
    settings = _settings(tmp_path, cores=cores, workers=workers, http_port=0, grpc_port=0)
    mine = worker_settings(settings, 41000, 41001)
    assert (mine.cores, mine.http_port, mine.grpc_port) == (each, 41000, 41001)
    assert mine.metrics_port == settings.metrics_port


def test_workers_run_in_every_model_control_mode(tmp_path: Path) -> None:
    # explicit mode too: API loads and unloads reach every worker (serving.desired_sync)
    assert _settings(tmp_path, workers=2, model_control_mode=ControlMode.EXPLICIT).workers == 2
    with pytest.raises(ValueError, match="--workers 0 must be at least 1"):
        _settings(tmp_path, workers=0)
    assert _settings(tmp_path, workers=1, model_control_mode=ControlMode.EXPLICIT).workers == 1
    assert _settings(tmp_path, workers=2, model_control_mode=ControlMode.POLL).workers == 2


def test_restart_backoff_doubles_while_a_worker_keeps_dying_and_resets_after_a_good_run() -> None:
    backoff = RestartBackoff(initial=0.5, maximum=4.0, stable_secs=60.0)
    assert [backoff.delay(lived_secs=1.0) for _ in range(7)] == [0, 0.5, 1, 2, 4, 4, 4]
    assert backoff.delay(lived_secs=60.0) == 0
    assert backoff.delay(lived_secs=1.0) == 0.5


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


def _listener(port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(8)
    return sock


def test_shared_listener_picks_one_port_that_workers_can_share() -> None:
    with shared_listener("127.0.0.1", 0) as hold:
        port = hold.getsockname()[1]
        assert port > 0
        with _listener(port, reuse_port=True) as a, _listener(port, reuse_port=True) as b:
            assert a.getsockname()[1] == b.getsockname()[1] == port
            with pytest.raises(OSError):  # a process that does not share still cannot take it
                _listener(port, reuse_port=False)


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "reuseport"])
def test_shared_listener_fails_loudly_on_a_port_in_use(reuse_port: bool) -> None:
    """Even a listener that shares with SO_REUSEPORT itself (another server) is a clash."""
    with _listener(0, reuse_port=reuse_port) as other:
        port = other.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: Address already"):
            shared_listener("127.0.0.1", port)


_WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    from serving.metrics import Metrics
    from serving.stats import RequestTimings

    m = Metrics()
    for _ in range(int(sys.argv[1])):
        m.observe_success("mlp", "1", 2, 2_000_000, RequestTimings(100_000, 10_000, 1_500_000, 20_000))
        m.observe_execution("mlp", "1")
    m.observe_failure("mlp", "1", 50_000)
    m.model_ready.labels("mlp", "1").set(1)
    m.set_queue_depth("mlp", "1", int(sys.argv[1]))
    print(__import__("os").getpid())
    """
)


@pytest.fixture
def multiproc_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "prometheus"
    path.mkdir()
    yield path


def _worker(multiproc_dir: Path, successes: int) -> int:
    """A separate process records metrics into the multiprocess files, as a worker does."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    out = subprocess.run(
        [sys.executable, "-c", _WORKER_SCRIPT, str(successes)],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(out.stdout)


def test_aggregated_metrics_sum_the_workers_under_the_same_names_and_labels(
    multiproc_dir: Path,
) -> None:
    first = _worker(multiproc_dir, 3)
    _worker(multiproc_dir, 4)
    text = AggregatedMetrics(str(multiproc_dir)).render().decode()
    assert 'sluice_inference_requests_total{model="mlp",outcome="success",version="1"} 7.0' in text
    assert 'sluice_inference_requests_total{model="mlp",outcome="failure",version="1"} 2.0' in text
    assert 'sluice_inference_count_total{model="mlp",version="1"} 14.0' in text
    assert 'sluice_inference_exec_count_total{model="mlp",version="1"} 7.0' in text
    assert 'sluice_queue_duration_seconds_bucket{le="0.00025",model="mlp",version="1"} 7.0' in text
    assert 'sluice_model_ready{model="mlp",version="1"} 1.0' in text
    assert 'sluice_queue_depth{model="mlp",version="1"} 7.0' in text
    assert "pid=" not in text

    # A dead worker's counts stay (totals never go back); its gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(first, str(multiproc_dir))
    text = AggregatedMetrics(str(multiproc_dir)).render().decode()
    assert 'sluice_inference_count_total{model="mlp",version="1"} 14.0' in text
    assert 'sluice_queue_depth{model="mlp",version="1"} 4.0' in text
