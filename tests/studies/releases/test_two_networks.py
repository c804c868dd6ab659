"""The two-network release's (v4) choices: the interval's scale chosen on cross-population
coverage, the error tables, and the half split that keeps a person's photos together."""

import numpy as np

from keras_alage.studies.releases import two_networks


def candidate(worst, other, width):
    return {"a->b": {"all": {"coverage": worst, "mean_width": width}},
            "b->a": {"all": {"coverage": other, "mean_width": width}}}


def test_the_scale_is_the_one_whose_worse_direction_covers_most():
    candidates = {"None": candidate(0.74, 0.83, 16.0), "1.0": candidate(0.76, 0.88, 26.0),
                  "4.0": candidate(0.765, 0.87, 19.0)}
    assert two_networks.choose_scale_floor(candidates) == 4.0
    # A coverage within 0.005 of the best goes to the narrower candidate.
    candidates["2.0"] = candidate(0.762, 0.9, 18.0)
    assert two_networks.choose_scale_floor(candidates) == 2.0
    assert two_networks.choose_scale_floor({"None": candidate(0.9, 0.9, 10.0), "1.0": candidate(0.8, 0.95, 9)}) is None


def test_error_tables_split_by_band_and_sex():
    truth = np.array([5.0, 15.0, 45.0, 47.0])
    table = two_networks.error_table({"age": np.array([6.0, 13.0, 40.0, 50.0])}, truth,
                                   {"band": [two_networks.age_band(t) for t in truth], "sex": ["f", "m", "f", "m"]})
    assert table["age"]["band=40-49"]["mae"] == 4.0 and table["age"]["band=40-49"]["bias"] == -1.0
    assert table["age"]["sex=f"]["mae"] == 3.0 and table["age"]["all"]["faces"] == 4
    assert two_networks.age_band(70) == "70+" and two_networks.age_band(9.9) == "0-9"
    assert two_networks.utkface_sex("x/26_1_2_2017.jpg.chip.jpg") == "female"


def test_halves_keep_each_fgnet_person_together():
    paths = [f"images/{s:03d}A{a:02d}.JPG" for s in range(1, 40) for a in (2, 10, 30)]
    halves = two_networks._halves({"fgnet": {"paths": paths}})["fgnet"]
    by_person = {}
    for path, half in zip(paths, halves):
        by_person.setdefault(path[7:10], set()).add(int(half))
    assert all(len(h) == 1 for h in by_person.values())
    assert 0.2 < halves.mean() < 0.8
