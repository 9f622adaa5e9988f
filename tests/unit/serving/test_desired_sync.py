"""Desired-state changes between workers: the supervisor's relay and a worker's side,
with real managers and real models (the pipe is a list)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from serving.desired_state import ModelTarget, Source
from serving.desired_sync import DesiredRelay, WorkerDesiredState
from serving.examples import write_repository
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.settings import ControlMode, Settings

MODEL = "identity_fp32"


def test_the_relay_numbers_targets_and_keeps_the_latest_per_model() -> None:
    relay = DesiredRelay()
    a = relay.received(1, 7, ModelTarget("a", Source.API).to_json())
    b = relay.received(2, 1, ModelTarget("b", Source.API).to_json())
    a2 = relay.received(2, 2, ModelTarget("a", Source.API, serve=False).to_json())
    assert [m[1] for m in (a, b, a2)] == [1, 2, 3]
    assert a2[:4] == ("desired", 3, 2, 2)
    assert relay.backlog() == [b, a2]  # what a starting worker applies, in order


def test_workers_converge_on_the_change_numbered_last(tmp_path: Path) -> None:
    write_repository(tmp_path, [MODEL])
    settings = Settings(model_repository=tmp_path, model_control_mode=ControlMode.EXPLICIT, cores=1)

    async def scenario() -> None:
        relay = DesiredRelay()
        managers = [ModelManager(settings, Metrics()) for _ in range(2)]
        up: list[tuple[int, tuple[Any, ...]]] = []
        sides = [
            WorkerDesiredState(m, i + 1, lambda msg, i=i: up.append((i + 1, msg)))
            for i, m in enumerate(managers)
        ]
        for m in managers:
            await m.start()
        try:
            # worker 1 loads, worker 2 unloads, both before either hears of the other
            await managers[0].load(MODEL)
            await managers[1].unload(MODEL)
            assert [m.ready_versions(MODEL) for m in managers] == [["1"], []]
            for origin, (_, nonce, target) in up:  # the supervisor relays to everyone
                message = relay.received(origin, nonce, target)
                for side in sides:
                    side.relayed(*message[1:])
                    side.relayed(*message[1:])  # a duplicate changes nothing
            for side in sides:
                await asyncio.gather(*side._tasks)
            # the unload was numbered last: every worker ends unloaded
            assert [m.ready_versions(MODEL) for m in managers] == [[], []]
            load = relay.received(2, 99, ModelTarget(MODEL, Source.API).to_json())
            stale = relay.backlog()[0]
            for side in sides:
                side.relayed(*load[1:])
                side.relayed(*stale[1:])  # older than what was applied: ignored
                await asyncio.gather(*side._tasks)
            assert [m.ready_versions(MODEL) for m in managers] == [["1"], ["1"]]
        finally:
            for side, m in zip(sides, managers, strict=True):
                await side.close()
                await m.close()

    asyncio.run(scenario())


def test_a_starting_worker_holds_relayed_targets_for_its_first_load(tmp_path: Path) -> None:
    write_repository(tmp_path, [MODEL, "identity_int32"])
    settings = Settings(
        model_repository=tmp_path, model_control_mode=ControlMode.EXPLICIT, cores=1,
        load_models=("identity_int32",),
    )  # fmt: skip
    relay = DesiredRelay()
    relay.received(2, 1, ModelTarget(MODEL, Source.API).to_json())
    relay.received(2, 2, ModelTarget("identity_int32", Source.API, serve=False).to_json())

    async def scenario() -> None:
        manager = ModelManager(settings, Metrics())
        side = WorkerDesiredState(manager, 1, lambda msg: None)
        for message in relay.backlog():
            side.relayed(*message[1:])
        assert not side._tasks  # held, nothing loaded before the start
        await manager.start()
        try:
            assert manager.ready_versions(MODEL) == ["1"]
            assert manager.ready_versions("identity_int32") == []
        finally:
            await manager.close()

    asyncio.run(scenario())
