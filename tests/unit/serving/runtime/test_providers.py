import logging

import onnxruntime
import pytest
from google.protobuf import text_format

from serving.config import model_config_pb2
from serving.errors import InvalidArgument
from serving.runtime.providers import (
    CPU,
    CUDA,
    OPENVINO,
    TENSORRT,
    ort_flavour,
    plan_instances,
)

ALL = [TENSORRT, CUDA, OPENVINO, CPU]


def config(text: str = "") -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig(name="m"))


def names(plans):
    return [p.provider_names for p in plans]


def test_no_instance_group_is_one_cpu_instance():
    assert names(plan_instances(config(), [CPU])) == [[CPU]]


def test_cpu_group_count():
    plans = plan_instances(config("instance_group [{kind: KIND_CPU, count: 3}]"), ALL)
    assert names(plans) == [[CPU]] * 3
    assert {p.kind for p in plans} == {"KIND_CPU"}


def test_gpu_group_makes_count_instances_per_listed_gpu():
    cfg = config("instance_group [{kind: KIND_GPU, count: 2, gpus: [0, 1]}]")
    plans = plan_instances(cfg, ALL)
    assert [p.device_id for p in plans] == [0, 0, 1, 1]
    assert names(plans) == [[CUDA, CPU]] * 4
    assert plans[2].providers[0].options == (("device_id", "1"),)


def test_gpu_group_without_gpus_uses_every_gpu():
    cfg = config("instance_group [{kind: KIND_GPU}]")
    plans = plan_instances(cfg, ALL, gpu_count=2)
    assert [p.device_id for p in plans] == [0, 1]


def test_tensorrt_goes_before_cuda_with_options():
    cfg = config(
        """
        instance_group [{kind: KIND_GPU, gpus: [1]}]
        optimization { execution_accelerators { gpu_execution_accelerator [
          {name: "tensorrt", parameters {key: "precision_mode", value: "FP16"}
                             parameters {key: "max_workspace_size_bytes", value: "1073741824"}}
        ]}}
        """
    )
    (plan,) = plan_instances(cfg, ALL)
    assert plan.provider_names == [TENSORRT, CUDA, CPU]
    trt = dict(plan.providers[0].options)
    assert trt == {
        "device_id": "1",
        "trt_fp16_enable": "1",
        "trt_int8_enable": "0",
        "trt_max_workspace_size": "1073741824",
    }


def test_openvino_options_map_to_ort_names():
    cfg = config(
        """
        optimization { execution_accelerators { cpu_execution_accelerator [
          {name: "openvino", parameters {key: "device_type", value: "HETERO:GPU,CPU"}
                             parameters {key: "precision", value: "FP16"}
                             parameters {key: "num_threads", value: "2"}
                             parameters {key: "cache_dir", value: "/tmp/ov"}}
        ]}}
        """
    )
    (plan,) = plan_instances(cfg, ALL)
    assert plan.provider_names == [OPENVINO, CPU]
    assert dict(plan.providers[0].options) == {
        "device_type": "HETERO:GPU,CPU",
        "precision": "FP16",
        "num_of_threads": "2",
        "cache_dir": "/tmp/ov",
    }


def test_auto_kind_follows_the_build():
    cfg = config("instance_group [{kind: KIND_AUTO}]")
    assert names(plan_instances(cfg, [CPU])) == [[CPU]]
    assert names(plan_instances(cfg, [CUDA, CPU], gpu_count=1)) == [[CUDA, CPU]]


@pytest.mark.parametrize(
    "accelerators",
    [
        'gpu_execution_accelerator [{name: "rocm"}]',
        'cpu_execution_accelerator [{name: "dnnl"}]',
        'cpu_execution_accelerator [{name: "openvino", parameters {key: "bogus", value: "1"}}]',
    ],
)
def test_unknown_accelerator_is_invalid_argument(accelerators):
    cfg = config(
        "instance_group [{kind: KIND_GPU, gpus: [0]}]\n"
        f"optimization {{ execution_accelerators {{ {accelerators} }} }}"
    )
    with pytest.raises(InvalidArgument):
        plan_instances(cfg, ALL)


def test_fallback_logs_one_warning(caplog):
    cfg = config(
        """
        instance_group [{kind: KIND_GPU, count: 2, gpus: [0, 1]}]
        optimization { execution_accelerators { gpu_execution_accelerator [{name: "tensorrt"}] }}
        """
    )
    with caplog.at_level(logging.WARNING, logger="serving.runtime.providers"):
        plans = plan_instances(cfg, [CPU])
    assert names(plans) == [[CPU]] * 4
    (record,) = caplog.records
    assert TENSORRT in record.getMessage()
    assert "running on CPUExecutionProvider" in record.getMessage()


def test_fallback_on_this_machine(caplog):
    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this build has CUDA")
    cfg = config("instance_group [{kind: KIND_GPU, gpus: [0]}]")
    with caplog.at_level(logging.WARNING, logger="serving.runtime.providers"):
        (plan,) = plan_instances(cfg)
    assert plan.provider_names == [CPU]
    assert len(caplog.records) == 1
    assert CUDA in caplog.records[0].getMessage()


def test_no_warning_when_everything_is_available(caplog):
    with caplog.at_level(logging.WARNING):
        plan_instances(config("instance_group [{kind: KIND_CPU, count: 2}]"))
    assert caplog.records == []


def test_ort_flavour_names_an_installed_distribution():
    dist, version = ort_flavour()
    assert dist.startswith("onnxruntime")
    assert version == onnxruntime.__version__
