"""What the engine was not tuned on: harder scenarios and other sensors (station/sim/
variants.py), each replayed through the engine as `station replay` does and held to the bar
of issue 2 against the physics. Tag reads without `px` (SPEC: optional), cameras at 5 and
30 frames/s, lenses that make tags half or twice as big, a detector reading half as often,
every line up to 2 s late; sprinters, backward walkers, photo finishes with a hidden bib, a
spotter in the same beam break, twenty runners, departing cameras on every quarter, a short
indoor track, pauses, bibless runners who checked in, a busy blocked beam.

The camera's frame rate and optics are never in the station's config: the engine has to
cope untold. `python -m station.sim.sweep` runs the same with many more seeds.
"""

from __future__ import annotations

import pytest

from station.replay import replay_file
from station.sim.score import score
from station.sim.sensors import iter_events, write_events
from station.sim.truth import compute_truth
from station.sim.variants import EXTRA, build_variant

SEEDS = (0, 1)

# Every harder scenario as it is, and the modifiers on the scenarios they bear on most.
VARIANTS = list(EXTRA) + [
    "solo-forward+nopx", "group+nopx", "checkpoints+nopx", "departing+nopx", "fast+nopx",
    "spotter-tight+nopx", "checkpoints-mixed+nopx", "missed-stray+nopx", "rain+nopx",
    "group+somepx", "backward-spotted+somepx", "blocked-beam+somepx",
    "group+fps5", "close-finish+fps5", "spotter-dropout+fps5", "departing+fps5",
    "group+fps30", "close-finish+fps30", "checkpoints+fps30",
    "group+optics05", "checkpoints+optics05", "departing+optics05", "spotter-dropout+optics05",
    "group+optics2", "checkpoints+optics2", "spotter-dropout+optics2", "missed-stray+optics2",
    "group+fewreads", "close-finish+fewreads", "spotter-dropout+fewreads",
    "checkpoints+late", "spotter-dropout+late", "close-finish+late", "blocked-beam+late",
    "indoor-short+fps5+optics2", "checkpoints-mixed+fps30+optics05", "walker+fewreads",
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", VARIANTS)
def test_engine_copes_with_what_it_was_not_tuned_on(name, seed, tmp_path):
    scenario = build_variant(name, seed=seed)
    log = tmp_path / "events.jsonl"
    write_events(log, iter_events(scenario.world, scenario.sensors, seed=seed))
    truth = compute_truth(scenario.world)
    assert truth.ambiguous == [], "a world with one right answer"
    result = score(truth, replay_file(log, scenario.config), f"{name} seed {seed}")
    assert result.truth_laps > 0
    failures = result.failures()
    assert not failures, "\n".join([result.summary()] + failures)


def test_variants_change_what_they_say():
    """The modifiers really change the log: no px, other frame rates, bigger tags."""
    def tags(name):
        sc = build_variant(name, seed=3)
        return [e for e in iter_events(sc.world, sc.sensors, seed=3) if e["type"] == "tag"]

    base = tags("solo-forward")
    assert all("px" in e for e in base)
    assert not any("px" in e for e in tags("solo-forward+nopx"))
    assert 2.5 < len(tags("solo-forward+fps30")) / len(base) < 3.5
    assert 0.4 < len(tags("solo-forward+fps5")) / len(base) < 0.6
    # The same runner at the same moment: a tag twice as big through the longer lens.
    t = next(e["t"] for e in base if e["tag"] == 14 and 20 < e["px"] < 40)
    (near,) = build_variant("solo-forward", seed=3).world.visible_tags("finish-cam", t)
    (far,) = build_variant("solo-forward+optics2", seed=3).world.visible_tags("finish-cam", t)
    assert far.px == pytest.approx(2 * near.px)
    sc = build_variant("solo-forward+optics2+fps30", seed=3)
    assert sc.config_text == build_variant("solo-forward", seed=3).config_text, \
        "the station is not told about the cameras' optics or frame rate"
