"""What is measured: scenarios (connections and group shape) and their phases (how
messages are published). See bench/README.md for what each one means."""

import math
from dataclasses import dataclass

# The saturation search starts with this many deliveries in flight, in whole messages
# (1 message for groups of 1,000 and more, 100 messages for groups of 10).
FIRST_IN_FLIGHT = 1000


@dataclass(frozen=True)
class Phase:
    name: str
    mode: str  # "rate": fixed messages/s per group; "closed": saturation; "half": half of it
    duration: float
    rate: float = 0.0  # messages per second per group (mode "rate")


RATE_1 = Phase("1/s", "rate", 5, 1.0)
RATE_10 = Phase("10/s", "rate", 4, 10.0)
SATURATION = Phase("saturation", "closed", 3)  # per step of the search
HALF = Phase("half saturation", "half", 4)
PROBE = Phase("publish probe", "rate", 6, 2.0)


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    connections: int
    group_size: int
    phases: tuple

    @property
    def groups(self):
        return max(1, self.connections // self.group_size)

    @property
    def first_window(self):
        return max(1, math.ceil(FIRST_IN_FLIGHT / self.group_size))

    @property
    def one_group(self):
        return self.groups == 1


def one_group(connections, phases):
    return Scenario(f"one-group-{connections}", f"{connections:,} connections, one group",
                    connections, connections, phases)


# Saturation (closed loop, bounded backlog) comes first, fixed rates that may overload a
# system last, so one phase's backlog cannot spill into the headline measurement.
FULL = (
    Scenario("publish-probe-1", "1 subscriber (HTTP publish latency)", 1, 1, (PROBE,)),
    one_group(100, (SATURATION, RATE_1, RATE_10)),
    one_group(1000, (SATURATION, HALF, RATE_1, RATE_10)),
    Scenario("groups-of-10-1000", "1,000 connections in 100 groups of 10", 1000, 10,
             (SATURATION, HALF, RATE_1, RATE_10)),
    one_group(5000, (SATURATION, RATE_1, RATE_10)),
    one_group(10000, (SATURATION, RATE_1, PROBE)),
)

QUICK = (one_group(1000, (SATURATION,)),)

# The scenario and phase the headline ratios are taken from.
HEADLINE = ("one-group-1000", "saturation")
