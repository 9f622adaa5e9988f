"""``sluice profile``: how much CPU and memory a model's service needs and the latency it
gives, measured on a real server with the benchmark suite's load generator, with a
recommendation by a stated rule."""

from serving.profile._grid import Configuration, LoadPoint
from serving.profile._profiler import ProfileRequest, run_profile
from serving.profile._recommend import HEADROOM, RULE, Recommendation, recommend
from serving.profile._registry import TAG_PREFIX, RegistryVersion, profile_source, profile_tags
from serving.profile._report import print_table
from serving.profile._resources import ResourceSample, ResourceWindow, process_tree

__all__ = [
    "HEADROOM",
    "RULE",
    "TAG_PREFIX",
    "Configuration",
    "LoadPoint",
    "ProfileRequest",
    "Recommendation",
    "RegistryVersion",
    "ResourceSample",
    "ResourceWindow",
    "print_table",
    "process_tree",
    "profile_source",
    "profile_tags",
    "recommend",
    "run_profile",
]
