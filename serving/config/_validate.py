"""Checks a completed model configuration must pass before a model loads."""

from __future__ import annotations

from collections.abc import Sequence

from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument, Unsupported

__all__ = ["validate_config"]

_Tensor = pb.ModelInput | pb.ModelOutput


def validate_config(cfg: pb.ModelConfig, source: str = "config.pbtxt") -> None:
    """Raise ``InvalidArgument`` (or ``Unsupported``) naming the first problem found."""
    if cfg.max_batch_size < 0:
        raise InvalidArgument(f"{source}: max_batch_size must be >= 0, got {cfg.max_batch_size}")
    _validate_tensors(cfg.input, "input", source)
    _validate_tensors(cfg.output, "output", source)
    _validate_version_policy(cfg.version_policy, source)
    _validate_instance_groups(cfg, source)
    _validate_scheduling(cfg, source)


def _validate_tensors(tensors: Sequence[_Tensor], role: str, source: str) -> None:
    seen: set[str] = set()
    for tensor in tensors:
        if not tensor.name:
            raise InvalidArgument(f"{source}: every {role} needs a name")
        if tensor.name in seen:
            raise InvalidArgument(f"{source}: {role} {tensor.name!r} is listed more than once")
        seen.add(tensor.name)
        if tensor.data_type == pb.TYPE_INVALID:
            raise InvalidArgument(f"{source}: {role} {tensor.name!r} has no data_type")
        if not tensor.dims:
            raise InvalidArgument(
                f"{source}: {role} {tensor.name!r} has no dims; a scalar is dims: [1] "
                "with reshape: {shape: []}"
            )
        for dim in tensor.dims:
            if dim <= 0 and dim != -1:
                raise InvalidArgument(
                    f"{source}: {role} {tensor.name!r} has dims {list(tensor.dims)}; "
                    "each dim must be positive or -1 (variable)"
                )


def _validate_version_policy(policy: pb.ModelVersionPolicy, source: str) -> None:
    choice = policy.WhichOneof("policy_choice")
    if choice == "latest" and policy.latest.num_versions < 1:
        raise InvalidArgument(
            f"{source}: version_policy latest needs num_versions >= 1, "
            f"got {policy.latest.num_versions}"
        )
    if choice == "specific":
        if not policy.specific.versions:
            raise InvalidArgument(f"{source}: version_policy specific lists no versions")
        negative = [v for v in policy.specific.versions if v < 0]
        if negative:
            raise InvalidArgument(
                f"{source}: version_policy specific has negative versions {negative}"
            )


def _validate_instance_groups(cfg: pb.ModelConfig, source: str) -> None:
    kinds = pb.ModelInstanceGroup.Kind
    for index, group in enumerate(cfg.instance_group):
        where = f"{source}: instance_group[{index}]"
        if group.count < 1:
            raise InvalidArgument(f"{where} needs count >= 1, got {group.count}")
        if group.kind not in (kinds.Value("KIND_CPU"), kinds.Value("KIND_GPU")):
            raise Unsupported(
                f"{where} has kind {kinds.Name(group.kind)}; ONNX Runtime models run on "
                "KIND_CPU or KIND_GPU"
            )
        if group.gpus and group.kind != kinds.Value("KIND_GPU"):
            raise InvalidArgument(f"{where} lists gpus but its kind is {kinds.Name(group.kind)}")
        if any(gpu < 0 for gpu in group.gpus):
            raise InvalidArgument(f"{where} has negative gpus {list(group.gpus)}")


def _validate_scheduling(cfg: pb.ModelConfig, source: str) -> None:
    choice = cfg.WhichOneof("scheduling_choice")
    if choice in ("sequence_batching", "ensemble_scheduling"):
        raise Unsupported(f"{source}: {choice} is not supported by Sluice")
    if choice != "dynamic_batching":
        return
    batching = cfg.dynamic_batching
    if cfg.max_batch_size == 0:
        raise InvalidArgument(
            f"{source}: dynamic_batching needs max_batch_size > 0; "
            "this model does not batch (max_batch_size 0)"
        )
    for size in batching.preferred_batch_size:
        if size < 1 or size > cfg.max_batch_size:
            raise InvalidArgument(
                f"{source}: dynamic_batching preferred_batch_size {size} must be between 1 "
                f"and max_batch_size {cfg.max_batch_size}"
            )
    if batching.priority_levels and not (
        1 <= batching.default_priority_level <= batching.priority_levels
    ):
        raise InvalidArgument(
            f"{source}: dynamic_batching default_priority_level must be between 1 and "
            f"priority_levels {batching.priority_levels}, got {batching.default_priority_level}"
        )
