"""Checks a completed model configuration must pass before a model loads.

Every count and size a config states is held to a limit (the ``MAX_*`` constants),
so a config from a file or a repository load override cannot make loading cost
what it likes: a million priority levels, ten thousand sessions, an hour-long
warmup. The limits are documented in the README's model repository section.
"""

from __future__ import annotations

from collections.abc import Sequence

from serving.config import model_config_pb2 as pb
from serving.errors import InvalidArgument, Unsupported

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_DIM",
    "MAX_INSTANCES",
    "MAX_MICROSECONDS",
    "MAX_PRIORITY_LEVELS",
    "MAX_QUEUE_SIZE",
    "MAX_RANK",
    "MAX_TENSOR_ELEMENTS",
    "MAX_VERSIONS",
    "MAX_WARMUP_COUNT",
    "MAX_WARMUP_ELEMENTS",
    "MAX_WARMUP_SAMPLES",
    "validate_config",
]

MAX_BATCH_SIZE = 2**20  # max_batch_size; preferred sizes and warmup batch_size stay below it
MAX_RANK = 64  # entries in dims / reshape (the request limit too)
MAX_DIM = 2**31 - 1  # one dim
MAX_TENSOR_ELEMENTS = 2**31 - 1  # product of a tensor's fixed dims, per batch item
MAX_INSTANCES = 64  # instance_group count, per group and in all (count x listed gpus)
MAX_VERSIONS = 1000  # version_policy latest num_versions and specific versions listed
MAX_PRIORITY_LEVELS = 10_000  # each level holds a queue and a policy
MAX_QUEUE_SIZE = 2**24  # max_queue_size of a queue policy
MAX_MICROSECONDS = 3_600_000_000  # one hour: queue delay and queue timeouts
MAX_WARMUP_SAMPLES = 64  # model_warmup entries
MAX_WARMUP_COUNT = 1000  # runs of one warmup sample
MAX_WARMUP_ELEMENTS = 2**28  # elements of one warmup input (batch_size x dims)

_Tensor = pb.ModelInput | pb.ModelOutput
_TIMEOUT_ACTIONS = (pb.ModelQueuePolicy.REJECT, pb.ModelQueuePolicy.DELAY)


def validate_config(cfg: pb.ModelConfig, source: str = "config.pbtxt") -> None:
    """Raise ``InvalidArgument`` (or ``Unsupported``) naming the first problem found."""
    if cfg.max_batch_size < 0:
        raise InvalidArgument(f"{source}: max_batch_size must be >= 0, got {cfg.max_batch_size}")
    _at_most(cfg.max_batch_size, MAX_BATCH_SIZE, "max_batch_size", source)
    _validate_tensors(cfg.input, "input", source)
    _validate_tensors(cfg.output, "output", source)
    _validate_version_policy(cfg.version_policy, source)
    _validate_instance_groups(cfg, source)
    _validate_scheduling(cfg, source)
    _validate_warmup(cfg, source)


def _at_most(value: int, limit: int, field: str, source: str) -> None:
    if value > limit:
        raise InvalidArgument(f"{source}: {field} {value} exceeds the limit of {limit}")


def _validate_shape(dims: Sequence[int], what: str, tensor: str, role: str, source: str) -> None:
    """Rank and each dim within the limits, and the fixed dims' product too."""
    where = f"{source}: {role} {tensor!r}"
    if len(dims) > MAX_RANK:
        raise InvalidArgument(f"{where} has {len(dims)} {what}, over the limit of {MAX_RANK}")
    elements = 1
    for dim in dims:
        if dim > MAX_DIM:
            label = "dim" if what == "dims" else f"{what} dim"
            raise InvalidArgument(f"{where} {label} {dim} exceeds the limit of {MAX_DIM}")
        elements *= max(dim, 1)
    if elements > MAX_TENSOR_ELEMENTS:
        raise InvalidArgument(
            f"{where} {what} {list(dims)} hold {elements} elements per batch item, over the "
            f"limit of {MAX_TENSOR_ELEMENTS}"
        )


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
        _validate_shape(tensor.dims, "dims", tensor.name, role, source)
        if tensor.HasField("reshape"):
            _validate_shape(tensor.reshape.shape, "reshape", tensor.name, role, source)


def _validate_version_policy(policy: pb.ModelVersionPolicy, source: str) -> None:
    choice = policy.WhichOneof("policy_choice")
    if choice == "latest" and policy.latest.num_versions < 1:
        raise InvalidArgument(
            f"{source}: version_policy latest needs num_versions >= 1, "
            f"got {policy.latest.num_versions}"
        )
    if choice == "latest":
        _at_most(
            policy.latest.num_versions, MAX_VERSIONS, "version_policy.latest.num_versions", source
        )
    if choice == "specific":
        if not policy.specific.versions:
            raise InvalidArgument(f"{source}: version_policy specific lists no versions")
        if len(policy.specific.versions) > MAX_VERSIONS:
            raise InvalidArgument(
                f"{source}: version_policy.specific.versions lists "
                f"{len(policy.specific.versions)} versions, over the limit of {MAX_VERSIONS}"
            )
        negative = [v for v in policy.specific.versions if v < 0]
        if negative:
            raise InvalidArgument(
                f"{source}: version_policy specific has negative versions {negative}"
            )


def _validate_instance_groups(cfg: pb.ModelConfig, source: str) -> None:
    kinds = pb.ModelInstanceGroup.Kind
    total = 0
    for index, group in enumerate(cfg.instance_group):
        where = f"{source}: instance_group[{index}]"
        if group.count < 1:
            raise InvalidArgument(f"{where} needs count >= 1, got {group.count}")
        _at_most(group.count, MAX_INSTANCES, f"instance_group[{index}].count", source)
        total += group.count * max(1, len(group.gpus))  # a GPU group's count is per GPU
        if group.kind not in (kinds.Value("KIND_CPU"), kinds.Value("KIND_GPU")):
            raise Unsupported(
                f"{where} has kind {kinds.Name(group.kind)}; ONNX Runtime models run on "
                "KIND_CPU or KIND_GPU"
            )
        if group.gpus and group.kind != kinds.Value("KIND_GPU"):
            raise InvalidArgument(f"{where} lists gpus but its kind is {kinds.Name(group.kind)}")
        if any(gpu < 0 for gpu in group.gpus):
            raise InvalidArgument(f"{where} has negative gpus {list(group.gpus)}")
    if total > MAX_INSTANCES:
        raise InvalidArgument(
            f"{source}: instance_group asks for {total} instances in all, over the limit of "
            f"{MAX_INSTANCES}"
        )


def _validate_scheduling(cfg: pb.ModelConfig, source: str) -> None:
    choice = cfg.WhichOneof("scheduling_choice")
    if (choice == "ensemble_scheduling") != (cfg.platform == "ensemble"):
        raise InvalidArgument(
            f'{source}: ensemble_scheduling and platform "ensemble" go together (serving.ensemble)'
        )
    if choice == "sequence_batching":
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
    field = "dynamic_batching.max_queue_delay_microseconds"
    _at_most(batching.max_queue_delay_microseconds, MAX_MICROSECONDS, field, source)
    levels = batching.priority_levels
    _at_most(levels, MAX_PRIORITY_LEVELS, "dynamic_batching.priority_levels", source)
    if levels and not 1 <= batching.default_priority_level <= levels:
        raise InvalidArgument(
            f"{source}: dynamic_batching default_priority_level must be between 1 and "
            f"priority_levels {levels}, got {batching.default_priority_level}"
        )
    if not levels and batching.default_priority_level > 1:
        raise InvalidArgument(
            f"{source}: dynamic_batching.default_priority_level must be 0 or 1 when "
            f"priority_levels is 0, got {batching.default_priority_level}"
        )
    _validate_queue_policy(
        batching.default_queue_policy, "dynamic_batching.default_queue_policy", source
    )
    for level in sorted(batching.priority_queue_policy):
        if not 1 <= level <= max(1, levels):
            raise InvalidArgument(
                f"{source}: dynamic_batching.priority_queue_policy key {level} is not a "
                f"priority level (1 to {max(1, levels)})"
            )
        _validate_queue_policy(
            batching.priority_queue_policy[level],
            f"dynamic_batching.priority_queue_policy[{level}]",
            source,
        )


def _validate_queue_policy(policy: pb.ModelQueuePolicy, field: str, source: str) -> None:
    if policy.timeout_action not in _TIMEOUT_ACTIONS:
        raise InvalidArgument(
            f"{source}: {field}.timeout_action {policy.timeout_action} is not REJECT or DELAY"
        )
    _at_most(policy.max_queue_size, MAX_QUEUE_SIZE, f"{field}.max_queue_size", source)
    _at_most(
        policy.default_timeout_microseconds,
        MAX_MICROSECONDS,
        f"{field}.default_timeout_microseconds",
        source,
    )


def _validate_warmup(cfg: pb.ModelConfig, source: str) -> None:
    if len(cfg.model_warmup) > MAX_WARMUP_SAMPLES:
        raise InvalidArgument(
            f"{source}: model_warmup lists {len(cfg.model_warmup)} samples, over the limit of "
            f"{MAX_WARMUP_SAMPLES}"
        )
    for index, warmup in enumerate(cfg.model_warmup):
        field = f"model_warmup[{index}]"
        if cfg.max_batch_size > 0 and warmup.batch_size > cfg.max_batch_size:
            raise InvalidArgument(
                f"{source}: {field}.batch_size {warmup.batch_size} exceeds max_batch_size "
                f"{cfg.max_batch_size}"
            )
        _at_most(warmup.count, MAX_WARMUP_COUNT, f"{field}.count", source)
        rows = max(1, warmup.batch_size) if cfg.max_batch_size > 0 else 1
        for name in sorted(warmup.inputs):
            dims = list(warmup.inputs[name].dims)
            where = f"{field}.inputs[{name!r}]"
            if len(dims) > MAX_RANK:
                raise InvalidArgument(
                    f"{source}: {where}.dims has {len(dims)} entries, over the limit of {MAX_RANK}"
                )
            if any(d < 1 or d > MAX_DIM for d in dims):
                raise InvalidArgument(
                    f"{source}: {where}.dims {dims}: each dim must be positive and at most "
                    f"{MAX_DIM}"
                )
            elements = rows
            for dim in dims:
                elements *= dim
            if elements > MAX_WARMUP_ELEMENTS:
                raise InvalidArgument(
                    f"{source}: {where} holds {elements} elements (batch_size x dims), over "
                    f"the limit of {MAX_WARMUP_ELEMENTS}"
                )
