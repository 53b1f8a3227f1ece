"""Seeded sensor simulators and replay, publishing over MQTT (see docs/simulators.md).

Pure generators live in :mod:`simulators.scenarios` (numpy only); the fleet plan
in :mod:`simulators.fleet`; MQTT publishing in :mod:`simulators.publisher`;
CLI hooks in :mod:`simulators.simulate` and :mod:`simulators.replay`.
"""

from simulators.demo import DEMO_FAILING_SENSOR, demo_registry, write_demo_registry
from simulators.fleet import FleetError, FleetPlan, SensorFaults, plan_fleet
from simulators.publisher import (
    EXPECTED_REJECTION,
    MalformedKind,
    Publisher,
    PublishStats,
    SensorStream,
    SimClock,
    TransportFaults,
)
from simulators.replay import (
    ReplayError,
    add_replay_arguments,
    example_csv,
    read_replay_csv,
    run_replay,
    write_replay_csv,
)
from simulators.scenarios import (
    FaultLog,
    GroundTruth,
    Series,
    apply_faults,
    crack_series,
    displacement_series,
    inclinometer_series,
    pond_and_phreatic_series,
    rain_series,
)
from simulators.simulate import Simulation, add_simulate_arguments, build_simulation, run_simulate

__all__ = [
    "DEMO_FAILING_SENSOR",
    "EXPECTED_REJECTION",
    "FaultLog",
    "FleetError",
    "FleetPlan",
    "GroundTruth",
    "MalformedKind",
    "PublishStats",
    "Publisher",
    "ReplayError",
    "SensorFaults",
    "SensorStream",
    "Series",
    "SimClock",
    "Simulation",
    "TransportFaults",
    "add_replay_arguments",
    "add_simulate_arguments",
    "apply_faults",
    "build_simulation",
    "crack_series",
    "demo_registry",
    "displacement_series",
    "example_csv",
    "inclinometer_series",
    "plan_fleet",
    "pond_and_phreatic_series",
    "rain_series",
    "read_replay_csv",
    "run_replay",
    "run_simulate",
    "write_demo_registry",
    "write_replay_csv",
]
