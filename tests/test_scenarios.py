"""Every simulated scenario, several seeds, replayed through the engine exactly as `station
replay` does, and compared with what physically happened (station/sim/truth.py): the bar of
issue 2 (lap recall and precision >= 99%, mean lap-time error <= 20 ms, quarter facing right
in >= 99% of lap-quarters, every alarm and blocked beam found, none invented; splits too).

A failure names the scenario, the seed and what differed (laps missed or invented, worst
lap times, wrong quarters, alarms), so it can be reproduced with
`station simulate NAME --seed N --out DIR --score`.
"""

from __future__ import annotations

import pytest

from station.replay import replay_file
from station.sim.scenarios import SCORED, build
from station.sim.score import Score, score
from station.sim.sensors import iter_events, write_events
from station.sim.truth import compute_truth

SEEDS = (0, 1, 2)


def replay_scenario(name: str, seed: int, tmp_path) -> Score:
    scenario = build(name, seed=seed)
    log = tmp_path / f"{name}-{seed}.jsonl"
    write_events(log, iter_events(scenario.world, scenario.sensors, seed=seed))
    results = replay_file(log, scenario.config)
    return score(compute_truth(scenario.world), results, f"{name} seed {seed}")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", SCORED)
def test_engine_matches_the_physics(name, seed, tmp_path):
    result = replay_scenario(name, seed, tmp_path)
    assert result.truth_laps > 0
    failures = result.failures()
    assert not failures, "\n".join([result.summary()] + failures)
