import pytest

from alage_pipelines import age_classes


@pytest.mark.parametrize(
    "name, count, first, last",
    [("morph", 62, 16, 77), ("fgnet", 70, 0, 69), ("lap", 101, 0, 100), ("imdb_wiki", 101, 0, 100)],
)
def test_paper_class_counts(name, count, first, last):
    classes = age_classes.get_age_classes(name)
    assert classes.num_classes == count
    assert classes.values[0] == first and classes.values[-1] == last
    assert classes.label_of_age(first) == 0 and classes.label_of_age(last) == count - 1


def test_adience_groups_are_valued_at_their_middle():
    classes = age_classes.get_age_classes("adience")
    assert classes.num_classes == 8
    assert classes.labels[4] == "25-32" and classes.values[4] == 28.5
    assert classes.values[-1] == 80.0
    with pytest.raises(ValueError, match="age groups"):
        classes.label_of_age(30)


def test_out_of_range_age_names_the_classes():
    with pytest.raises(ValueError, match=r"Age 80 is outside the 'fgnet' classes \(0-69\)"):
        age_classes.get_age_classes("fgnet").label_of_age(80)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="known: adience, fgnet"):
        age_classes.get_age_classes("morph2")
