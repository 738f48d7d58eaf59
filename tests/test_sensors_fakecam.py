"""The fake camera's runners: whole figures (shirt, head, arms, legs) with their bib on the
chest or the back, and runners without a bib, drawn where the simulated world puts them; the
real detector reads exactly the bibs on them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from station.sensors.fakecam import Figure, background, figure_for, render, world_scene
from station.sensors.tags import TagDetector
from station.sim.scenarios import build


@pytest.fixture(scope="module")
def detector():
    return TagDetector()


def read(detector, frame) -> list[int]:
    return sorted(d.tag for d in detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)))


def changed(frame, where=None) -> float:
    """Fraction of pixels (in `where`: y0, y1, x0, x1) that differ from the empty track."""
    diff = np.abs(frame.astype(int) - background(*frame.shape[1::-1]).astype(int)).max(axis=2)
    if where is not None:
        y0, y1, x0, x1 = where
        diff = diff[y0:y1, x0:x1]
    return float((diff > 40).mean())


def test_figures_carry_their_bibs_front_or_back_and_the_detector_reads_exactly_those(detector):
    figures = [
        figure_for("far", 300, 330, 22, tag=31, facing=False),     # bib 15 seen from behind
        figure_for("nobib", 520, 340, 45, tag=None, facing=True),  # no bib: a person, no tag
        figure_for("back", 760, 300, 60, tag=23, facing=False),
        figure_for("front", 1050, 260, 95, tag=14, facing=True),
    ]
    frame = render(figures)
    assert read(detector, frame) == [14, 23, 31]
    # The runner without a bib is drawn all the same: a head, a shirt, legs.
    m = 45 / 0.15
    body = (int(340 - 0.5 * m), int(340 + 1.2 * m), int(520 - 0.3 * m), int(520 + 0.3 * m))
    assert changed(frame, body) > 0.3
    assert changed(render([])) == 0.0
    # Front and back differ where it shows: a face (skin) or hair.
    front, back = (render([Figure(640, 400, 60, facing=f)]) for f in (True, False))
    head = (400 - int(0.5 * 400), 400 - int(0.3 * 400), 640 - 20, 640 + 20)
    assert np.abs(front[head[0]:head[1], head[2]:head[3]].astype(int)
                  - back[head[0]:head[1], head[2]:head[3]].astype(int)).max() > 40


def test_one_runner_keeps_one_shirt_and_runners_differ():
    a1, a2 = figure_for("bib7", 0, 0, 30, 14, True), figure_for("bib7", 9, 9, 60, 15, False, 3.0)
    assert a1.shirt_bgr == a2.shirt_bgr and a1.skin_bgr == a2.skin_bgr
    shirts = {figure_for(f"bib{n}", 0, 0, 30, None, True).shirt_bgr for n in range(1, 30)}
    assert len(shirts) >= 5


def test_world_frames_with_people_read_as_well_as_bibs_alone(detector):
    # The same simulated moments drawn as bibs alone and as whole runners: the bodies (and
    # the runners without a bib) cost no read, and are never read as a tag.
    world = build("demo", seed=0).world
    cam = world.config.cameras[0]
    bibs_only = world_scene(world, cam.id, cam.width, cam.height, people=False)
    people = world_scene(world, cam.id, cam.width, cam.height, people=True)
    want, got, bibless, false = {False: 0, True: 0}, {False: 0, True: 0}, 0, 0
    times = [t for t in np.arange(30.0, 1500.0, 0.7) if people(t)][:60]
    assert len(times) == 60
    for t in times:
        for with_people, scene in ((False, bibs_only), (True, people)):
            items = scene(t)
            tags = {i.tag for i in items if i.tag is not None}
            bibless += with_people and any(isinstance(i, Figure) and i.tag is None for i in items)
            seen = set(read(detector, render(items, cam.width, cam.height)))
            readable = {i.tag for i in items if i.tag is not None and i.px >= 20}
            want[with_people] += len(readable)
            got[with_people] += len(readable & seen)
            false += len(seen - tags)
    assert false == 0
    assert bibless > 0  # the runner without a bib was in the picture
    assert got[True] >= got[False] - 1 and got[True] >= 0.85 * want[True], (got, want)
