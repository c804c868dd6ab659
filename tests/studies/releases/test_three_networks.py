"""Release v5's choices: the banded combination fitted per band, the rule families scored leaving
one population out (the held-out population's labels never reach its own choice), the interval's
settings chosen the same way, and coverage of group labels."""

import numpy as np
import pytest

from keras_alage.evaluation import intervals
from keras_alage.serving import ensemble
from keras_alage.studies.releases import three_networks


def population(rng, n, good_young: str, good_old: str, groups=False, female_bias=0.0):
    """Members' ages around the truth: `good_young` is accurate under 40, `good_old` from 40 on,
    the third member noisy everywhere; women read `female_bias` years young by every member."""
    truth = rng.uniform(1, 80, n)
    sex = np.where(rng.random(n) < 0.5, "female", "male")
    pop = {"truth": truth, "sex": sex, "subject": np.arange(n).astype(str),
           "faceapi_female": np.where(sex == "female", 0.9, 0.1)}
    for member in three_networks.MEMBERS:
        noise = np.where(truth < 40, 1.0 if member == good_young else 8.0, 1.0 if member == good_old else 8.0)
        pop[f"{member}_age"] = truth + rng.normal(0, noise) - np.where(sex == "female", female_bias, 0.0)
    if groups:  # ten-year groups, like FairFace's ("30-39" is [30, 40))
        pop["low"], pop["high"] = np.floor(truth / 10) * 10, np.floor(truth / 10) * 10 + 10
    else:
        pop["low"] = pop["high"] = truth
    classes = np.arange(1, 101)  # faceres's classes are ages 1-100; each cut scale a little off
    for offset, scale in zip((0.0, 2.0, 5.0), three_networks.FACERES_SCALES):
        logits = -np.abs(classes[None, :] - (pop["faceres_age"] + offset)[:, None])
        pop[f"faceres_probs/{scale}"] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return pop


def populations(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": population(rng, 600, "al", "faceapi"), "b": population(rng, 600, "al", "faceapi"),
            "c": population(rng, 300, "al", "faceapi", groups=True)}


def test_banded_weights_follow_the_member_that_is_right_in_each_band():
    combination = three_networks.fit_banded(populations())
    assert combination.members == three_networks.MEMBERS
    # Young bands lean on "al", old bands on "faceapi"; the noisy "faceres" gets little weight.
    assert combination.weights[0][0] >= 0.75 and combination.weights[-1][1] >= 0.75
    assert all(row[2] <= 0.25 for row in combination.weights)


def test_leave_one_population_out_fits_each_rule_without_the_population_it_scores(monkeypatch):
    pops = populations()
    seen = []
    fit = three_networks.family_combination

    def recording(family, given):
        seen.append((family, sorted(given)))
        return fit(family, given)

    monkeypatch.setattr(three_networks, "family_combination", recording)
    lopo = three_networks.leave_one_population_out(pops)
    assert sorted(seen) == sorted((f, sorted(set(pops) - {held})) for f in three_networks.RULE_FAMILIES for held in pops)
    assert set(lopo) == set(three_networks.RULE_FAMILIES)


def test_leave_one_population_out_never_reads_the_held_out_labels():
    pops = populations()
    first = three_networks.leave_one_population_out(pops)
    scrambled = {name: dict(pop) for name, pop in pops.items()}
    rng = np.random.default_rng(9)
    scrambled["c"]["low"] = rng.permutation(pops["c"]["low"])
    scrambled["c"]["high"] = scrambled["c"]["low"] + 9
    second = three_networks.leave_one_population_out(scrambled)
    # The rule chosen without "c" is the same; its score on "c" changes with c's labels.
    assert first["banded"]["c"]["combination"] == second["banded"]["c"]["combination"]
    assert first["banded"]["c"]["error"] != second["banded"]["c"]["error"]
    # The rules fitted without "a" or "b" do see c's labels, so they may move.
    assert three_networks.choose_family(first) == "banded"


def test_the_family_with_the_best_worst_case_is_chosen():
    lopo = {"v4_mean": {"x": {"ratio_to_best_member": 0.9}, "y": {"ratio_to_best_member": 1.3}},
            "mean": {"x": {"ratio_to_best_member": 1.0}, "y": {"ratio_to_best_member": 1.05}},
            "median": {"x": {"ratio_to_best_member": 1.1}, "y": {"ratio_to_best_member": 1.1}},
            "banded": {"x": {"ratio_to_best_member": 0.8}, "y": {"ratio_to_best_member": 1.2}}}
    assert three_networks.choose_family(lopo) == "mean"
    # A fitted rule must win by more than the tolerance: by 0.01 it loses to the plain mean, by 0.03 it wins.
    lopo["mean_shifted"] = {"x": {"ratio_to_best_member": 1.04}, "y": {"ratio_to_best_member": 0.9}}
    assert three_networks.choose_family(lopo) == "mean"
    lopo["mean_shifted"]["x"]["ratio_to_best_member"] = 1.02
    assert three_networks.choose_family(lopo) == "mean_shifted"


def test_group_labels_are_covered_by_the_share_of_the_group_inside():
    # Group 30-39 (ten ages): [25, 34.5] holds 30..34 and half of 34-35 -> 4.5 of 10.
    share = three_networks.expected_inside(np.array([25.0, 0.0, 50.0]), np.array([34.5, 100.0, 60.0]),
                                       np.array([30.0, 30.0, 33.0]), np.array([40.0, 40.0, 33.0]))
    np.testing.assert_allclose(share, [0.45, 1.0, 0.0])  # an exact age outside: 0


def with_answers(pops):
    return three_networks.answered(pops, ("1.0", "top2"), ensemble.Combination("mean", three_networks.MEMBERS))


def test_interval_settings_are_chosen_without_the_population_they_are_scored_on():
    pops = populations(1)
    left = three_networks.left_out(pops, "mean_shifted")
    candidates = three_networks.interval_candidates(left)
    key = "floor=None nominal=0.9"
    # Held out "a": calibrated on "b" alone (the exact-age populations without it; "c" has groups),
    # every age answered by the rule fitted without "a".
    table = three_networks.fit_interval([left["a"]["b"]], None, 0.9)
    assert candidates[key]["held_out"]["a"] == three_networks.coverage_rows(table, left["a"]["a"])
    assert left["a"]["b"]["age"].tolist() != left["b"]["b"]["age"].tolist()  # the shifts differ by what was left out
    chosen = three_networks.choose_interval(candidates)
    worst = {k: three_networks.worst_coverage(c) for k, c in candidates.items()}
    reaching = [k for k in worst if worst[k] >= three_networks.LEAST_COVERAGE]
    assert chosen in reaching if reaching else worst[chosen] == max(worst.values())
    widths = {k: np.mean([rows["all"]["mean_width"] for rows in candidates[k]["held_out"].values()]) for k in reaching}
    assert not reaching or widths[chosen] == min(widths.values())


def test_faceres_choice_is_made_without_the_held_out_population(monkeypatch):
    pops = populations(2)
    assert three_networks.choose_faceres(pops)[0] == "1.0"  # the scale whose answers are not offset
    seen = []
    choose = three_networks.choose_faceres
    monkeypatch.setattr(three_networks, "choose_faceres", lambda given: seen.append(sorted(given)) or choose(given))
    three_networks.leave_one_population_out(pops)
    assert all(len(names) == 2 for names in seen) and len(seen) == len(three_networks.RULE_FAMILIES) * 3


def test_per_sex_tables_hold_for_women_read_young():
    rng = np.random.default_rng(2)
    pops = with_answers({"a": population(rng, 1500, "al", "faceapi", female_bias=8.0),
                         "b": population(rng, 1500, "al", "faceapi", female_bias=8.0)})
    table = three_networks.fit_interval([pops["a"]], None, 0.9)
    rows = three_networks.coverage_rows(table, pops["b"])
    assert rows["sex=female"]["coverage"] >= 0.86 and rows["sex=male"]["coverage"] >= 0.86
    # One table for both sexes pays for the women's bias in every man's interval.
    pooled = intervals.fit(pops["a"]["age"], pops["a"]["truth"])
    low, high = intervals.apply(pooled, pops["b"]["age"])
    men = pops["b"]["sex"] == "male"
    assert rows["sex=male"]["mean_width"] < np.mean((high - low)[men]) - 3.0


def test_repeated_splits_report_a_spread_per_population():
    pops = with_answers(populations(3))
    splits = three_networks.repeated_splits(pops, None, 0.9, splits=5)
    assert set(splits) == {"a", "b", "c"}
    assert splits["a"]["all"]["p05"] <= splits["a"]["all"]["mean"] <= splits["a"]["all"]["p95"]


def test_the_simplex_grid_and_the_scaled_cut():
    grid = three_networks.simplex(0.25, 3)
    assert len(grid) == 15 and all(abs(sum(w) - 1) < 1e-9 for w in grid)
    cut = three_networks.scaled_cut({"x": 0.2, "y": 0.2, "width": 0.6, "height": 0.6}, 1.25)
    assert (cut.x, cut.width) == pytest.approx((0.125, 0.75))


def test_shifts_correct_a_bias_the_members_share_per_predicted_sex_and_band():
    rng = np.random.default_rng(5)
    pops = {"a": population(rng, 1500, "al", "faceapi", female_bias=6.0),
            "b": population(rng, 1500, "al", "faceapi", female_bias=6.0)}
    shifted = three_networks.fit_shifts(pops, ensemble.Combination("mean", three_networks.MEMBERS))
    # A group-labelled population (residual 0 inside its group) takes no part in the medians.
    grouped = dict(pops, c=population(rng, 3000, "al", "faceapi", groups=True))
    assert three_networks.fit_shifts(grouped, ensemble.Combination("mean", three_networks.MEMBERS)) == shifted
    female, male = shifted.shifts
    assert all(4.0 <= v <= 8.0 for v in female) and all(abs(v) <= 1.5 for v in male)
    plain = ensemble.Combination("mean", three_networks.MEMBERS)
    for pop in pops.values():
        women = pop["sex"] == "female"
        assert abs(np.mean((three_networks.combined(pop, shifted) - pop["truth"])[women])) < 1.0
        assert np.mean((three_networks.combined(pop, plain) - pop["truth"])[women]) < -5.0


def with_crops(pops, extra_noise, seed=7):
    """`pops` with the AL member's answers under both candidate crops: shift_flip's are its
    `al_age`, center's those plus noise of `extra_noise` years (0: the same answers)."""
    rng = np.random.default_rng(seed)
    for pop in pops.values():
        pop["al_age/shift_flip"] = pop["al_age"]
        pop["al_age/center"] = pop["al_age"] + rng.normal(0, extra_noise, len(pop["al_age"])) if extra_noise else pop["al_age"]
    return pops


def test_the_al_crops_with_the_lower_left_out_error_are_chosen_and_the_cheaper_on_a_tie():
    chosen, report, _ = three_networks.choose_al_crops(with_crops(populations(4), 6.0))
    assert chosen == "shift_flip"  # the centre crop's answers are noisier
    scores = report["candidates"]
    assert scores["center"]["mean"] > scores["shift_flip"]["mean"]
    assert scores["shift_flip"]["views"] == 10 and scores["center"]["views"] == 1
    assert all(c["crops"] == "shift_flip" for c in report["chosen_without_each_population"].values())
    # Equal answers: equal errors, and the one view is chosen.
    assert three_networks.choose_al_crops(with_crops(populations(4), 0.0))[0] == "center"


def test_each_populations_crops_are_chosen_on_the_other_two(monkeypatch):
    pops = with_crops(populations(5), 1.0)
    errors = {"shift_flip": {"a": 1.0, "b": 1.0, "c": 3.0}, "center": {"a": 2.0, "b": 2.0, "c": 0.5}}

    def scored(given):  # each candidate's left-out errors as set above
        crops = "center" if given["a"]["al_age"] is pops["a"]["al_age/center"] else "shift_flip"
        return {"mean": {held: {"error": errors[crops][held], "ratio_to_best_member": 1.0} for held in given}}

    monkeypatch.setattr(three_networks, "leave_one_population_out", scored)
    chosen, report, lopo = three_networks.choose_al_crops(pops)
    assert chosen == "center"  # mean 1.5 against 1.67
    without = report["chosen_without_each_population"]
    assert without["c"] == {"crops": "shift_flip", "error": 3.0}  # "a" and "b" alone prefer the ten crops
    assert without["a"] == {"crops": "center", "error": 2.0}
    assert lopo["mean"]["c"]["error"] == 0.5  # the chosen crops' scores, handed on to `choose`


def test_cached_answers_gain_only_the_crops_they_lack(tmp_path, monkeypatch):
    truth = np.array([20.0, 30.0, 40.0])
    monkeypatch.setattr(three_networks, "population_faces", lambda *args: {"truth": truth, "encoded": [b"a", b"b", b"c"]})
    cuts = {"1.0": three_networks.scaled_cut({"x": 0.2, "y": 0.2, "width": 0.6, "height": 0.6}, 1.0)}
    cut_record = three_networks.json.dumps({n: c.to_json() for n, c in cuts.items()})
    # A cache written before the crops were a choice: v4's own crops' answers as "al_age".
    np.savez(tmp_path / "answers_fgnet.npz", al_age=truth + 1, faceapi_age=truth + 2, faceapi_female=truth * 0,
             **{"faceres_probs/1.0": np.ones((3, 100)) / 100}, v4_weights=np.array("digest"),
             faceres_cuts=np.array(cut_record))
    asked = []

    def member_answers(server, net, wanted, encoded):
        asked.append((server, sorted(wanted)))
        return {"al_age": truth + 3, "faceapi_age": truth + 2, "faceapi_female": truth * 0}

    monkeypatch.setattr(three_networks, "member_answers", member_answers)
    servers = {"shift_flip": "ten views", "center": "one view"}
    pop = three_networks.population_answers("fgnet", "build", None, servers, "net", cuts, "digest", str(tmp_path),
                                            None, "shift_flip")
    assert asked == [("one view", [])]  # only the centre crop's AL answers were missing
    assert pop["al_age/shift_flip"].tolist() == (truth + 1).tolist() and pop["al_age/center"].tolist() == (truth + 3).tolist()
    assert "al_age" not in pop
    again = three_networks.population_answers("fgnet", "build", None, servers, "net", cuts, "digest", str(tmp_path),
                                              None, "shift_flip")
    assert len(asked) == 1 and again["al_age/center"].tolist() == (truth + 3).tolist()  # now all from the cache
    three_networks.population_answers("fgnet", "build", None, servers, "net", cuts, "other", str(tmp_path), None,
                                      "shift_flip")
    assert asked[1:] == [("ten views", ["1.0"]), ("one view", [])]  # other weights: everything again
