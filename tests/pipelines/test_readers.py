import collections
import json

import numpy as np
import pytest

from alage_pipelines import protocols
from alage_pipelines.readers import adience, csv_files, fairface, fgnet, imdb_wiki, lap, utkface

# --- real data ----------------------------------------------------------------------


def test_fgnet_reads_every_photo_with_subject_and_age(shared_data):
    result = fgnet.read_fgnet(shared_data / "fgnet")
    assert len(result.records) == 1002 and result.dropped == []
    assert len({r.subject for r in result.records}) == 82
    first = next(r for r in result.records if r.path.endswith("001A02.JPG"))
    assert (first.subject, first.age, first.label) == ("001", 2.0, 2)
    assert min(r.age for r in result.records) == 0 and max(r.age for r in result.records) == 69
    variants = [r for r in result.records if r.path.lower().endswith(("a.jpg", "b.jpg"))]
    assert variants, "FG-NET's a/b variants (same subject and age, two photos) must be read"


def test_utkface_reads_names_and_drops_ages_beyond_the_classes(shared_data):
    result = utkface.read_utkface(shared_data / "utkface" / "crop_part1")
    assert len(result.records) + len(result.dropped) == 9672
    assert set(result.drop_counts()) <= {"age outside 0-100"}
    assert all(0 <= r.label <= 100 and r.subject == "" for r in result.records)
    assert {r.attributes["gender"] for r in result.records} == {"male", "female"}
    assert len({r.attributes["race"] for r in result.records}) == 5


def test_adience_messy_labels_are_mapped_or_dropped_with_counts(shared_data):
    result = adience.read_adience(shared_data / "adience")
    counts = result.drop_counts()
    rows = sum(
        len([l for l in path.read_bytes().split(b"\n") if l.strip()]) - 1
        for path in (shared_data / "adience").glob("fold_*_data.txt")
    )
    assert len(result.records) + len(result.dropped) == rows  # every row accounted for
    assert counts["short row"] == 3  # the partial folds 2-4 end in a truncated row
    assert counts["no age label"] >= 100  # "None" and empty cells
    assert counts["age between groups"] > 0 and counts["age range spans groups"] > 0
    assert {r.label for r in result.records} == set(range(8))
    assert all(r.subject and r.attributes["fold"] in "01234" for r in result.records)
    record = result.records[0]
    assert "/faces/30601258@N03/coarse_tilt_aligned_face.1.10399646885_67c7d20df9_o.jpg" in record.path
    assert record.label == 4 and record.age == 28.5  # "(25, 32)"


@pytest.mark.parametrize(
    "text, group",
    [("(0, 2)", 0), ("(8, 12)", 2), ("(8, 13)", 2), ("(38, 42)", 5), ("(27, 32)", 4), ("35", None),
     ("13", 2), ("57", None), ("(38, 48)", None), ("(8, 23)", None), ("None", None), ("", None), ("3", None)],
)
def test_adience_label_mapping(text, group):
    if group is None:
        with pytest.raises(ValueError):
            adience.group_of_label(text)
    else:
        assert adience.group_of_label(text) == group


# --- fixtures in the published formats ----------------------------------------------

MORPH_CSV = (
    "id_num,picture_num,dob,doa,race,gender,facial_hair,age,age_diff,glasses,photo\n"
    "003303,0,1/14/1982,1/16/2003,W,M,0,21,0,0,Album2/003303_00M21.JPG\n"
    "003303,1,1/14/1982,3/2/2005,W,M,1,23,2,0,Album2/003303_01M23.JPG\n"
    "104857,0,6/5/1960,8/9/2004,B,F,0,44,0,1,Album2/104857_00F44.JPG\n"
    "200000,0,6/5/1990,8/9/2004,W,F,0,14,0,0,Album2/200000_00F14.JPG\n"
    "200001,0,6/5/1990,8/9/2004,W,F,0,,0,0,Album2/200001_00F.JPG\n"
)


def test_morph_reader_keeps_subjects_races_and_reports_drops(tmp_path):
    (tmp_path / "MORPH_Album2.csv").write_text(MORPH_CSV)
    result = csv_files.read_morph(tmp_path / "MORPH_Album2.csv", races=["W"])
    assert [r.subject for r in result.records] == ["003303", "003303"]
    assert result.records[0].path == str(tmp_path / "Album2" / "003303_00M21.JPG")
    assert result.records[1].label == 23 - 16 and result.records[0].attributes["race"] == "white"
    assert result.drop_counts() == {"race B not selected": 1, "age outside 16-77": 1, "age is not a number": 1}


def test_morph_reader_names_missing_columns(tmp_path):
    (tmp_path / "bad.csv").write_text("id_num,age\n1,20\n")
    with pytest.raises(ValueError, match=r"bad.csv: missing column\(s\) \['race', 'gender', 'photo'\]"):
        csv_files.read_morph(tmp_path / "bad.csv")


def test_generic_csv(tmp_path):
    (tmp_path / "labels.csv").write_text("path,age,subject,age_std\nimg/a.jpg,30,p1,3.5\n/abs/b.png,101,p2,\nc.jpg,x,p3,\n")
    result = csv_files.read_age_csv(tmp_path / "labels.csv")
    assert len(result.records) == 1
    record = result.records[0]
    assert record.path == str(tmp_path / "img" / "a.jpg") and record.age_std == 3.5 and record.subject == "p1"
    assert result.drop_counts() == {"age outside 0-100": 1, "age is not a number": 1}


def test_unmatched_names_and_ages_are_dropped_with_reasons(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("001A02.JPG", "notes.txt", "002A70.JPG"):
        (images / name).write_bytes(b"")
    result = fgnet.read_fgnet(tmp_path)
    assert [r.subject for r in result.records] == ["001"]
    assert result.drop_counts() == {"name is not SSSAxx[a|b].JPG": 1, "age outside 0-69": 1}


def test_missing_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="FG-NET images folder not found"):
        fgnet.read_fgnet(tmp_path)


# --- LAP and IMDB-WIKI, on fixtures in their published formats --------------------


def _lap_2016(root):
    for split, rows in {
        "train": [("000001.jpg", "21.43", "3.12"), ("000002.jpg", "54.0", "6.5")],
        "valid": [("005614.jpg", "7.9", "1.1"), ("005615.jpg", "n/a", "1.0")],
        "test": [("006649.jpg", "33.3", "4.0"), ("006650.jpg", "104.2", "9.0")],
    }.items():
        (root / split).mkdir(parents=True)
        lines = ["image,mean,stdv"] + [",".join(row) for row in rows]
        (root / f"{split}_gt.csv").write_text("\n".join(lines) + "\n")


def test_lap_2016_reads_mean_std_and_official_splits(tmp_path):
    _lap_2016(tmp_path)
    result = lap.read_lap(tmp_path, "2016")
    assert len(result.records) == 4
    assert result.drop_counts() == {"mean age is not a number": 1, "age outside 0-100": 1}
    first = result.records[0]
    assert first.path == str(tmp_path / "train" / "000001.jpg")
    assert (first.age, first.age_std, first.label, first.attributes["split"]) == (21.43, 3.12, 21, "train")

    split = protocols.official_split(result.records)
    assert split.folds[0].train == [str(tmp_path / "train" / n) for n in ("000001.jpg", "000002.jpg")]
    assert split.folds[0].test == [str(tmp_path / "test" / "006649.jpg")]
    with_valid = protocols.official_split(result.records, train=("train", "valid"))
    assert len(with_valid.folds[0].train) == 3
    with pytest.raises(ValueError, match="split"):
        protocols.official_split(result.records, test="holdout")


def test_lap_2015_semicolon_files_without_header(tmp_path):
    (tmp_path / "Train").mkdir()
    (tmp_path / "Train.csv").write_text("image_1.jpg;26.5;4.3\r\nimage_2.jpg;61;7.0\r\nimage_3.jpg;12\r\n")
    result = lap.read_lap(tmp_path, "2015", splits=["train"])
    assert [(r.age, r.age_std) for r in result.records] == [(26.5, 4.3), (61.0, 7.0)]
    assert result.dropped == [("Train.csv:3", "short row (needs image, mean, std)")]
    with pytest.raises(FileNotFoundError, match="Validation.csv"):
        lap.read_lap(tmp_path, "2015", splits=["valid"])
    with pytest.raises(ValueError, match="edition"):
        lap.read_lap(tmp_path, "2017")


def _matlab_datenum(year, month, day):
    import datetime

    return datetime.date(year, month, day).toordinal() + 366


def _write_imdb_mat(path, key="imdb"):
    from scipy.io import savemat

    def cells(values):
        out = np.empty((1, len(values)), dtype=object)
        for i, value in enumerate(values):
            out[0, i] = np.array([value]) if isinstance(value, str) else np.asarray(value, float)
        return out

    rows = [  # (path, dob, taken, gender, face score, second face, celeb id)
        ("01/nm0000001_rm1_1968_2.jpg", _matlab_datenum(1940, 5, 10), 1968, 1.0, 3.2, np.nan, 1),
        ("01/nm0000002_rm2_1990_1.jpg", _matlab_datenum(1962, 1, 2), 1990, 0.0, 4.1, np.nan, 2),
        ("02/nm0000003_rm3_2001_1.jpg", _matlab_datenum(1980, 3, 3), 2001, 0.0, -np.inf, np.nan, 3),
        ("02/nm0000004_rm4_2005_1.jpg", _matlab_datenum(1970, 3, 3), 2005, np.nan, 0.4, np.nan, 4),
        ("03/nm0000005_rm5_2010_1.jpg", _matlab_datenum(1975, 3, 3), 2010, 1.0, 2.5, 1.7, 5),
        ("03/nm0000006_rm6_2010_1.jpg", _matlab_datenum(2012, 3, 3), 2010, 1.0, 2.5, np.nan, 6),
        ("04/nm0000001_rm7_1970_1.jpg", _matlab_datenum(1940, 5, 10), 1970, 1.0, 1.5, np.nan, 1),
    ]
    struct = {
        "dob": np.array([[r[1] for r in rows]], float),
        "photo_taken": np.array([[r[2] for r in rows]], float),
        "full_path": cells([r[0] for r in rows]),
        "gender": np.array([[r[3] for r in rows]], float),
        "name": cells([f"Person {r[6]}" for r in rows]),
        "face_location": cells([[10, 10, 90, 90]] * len(rows)),
        "face_score": np.array([[r[4] for r in rows]], float),
        "second_face_score": np.array([[r[5] for r in rows]], float),
    }
    if key == "imdb":
        struct["celeb_names"] = cells([f"Person {i}" for i in range(1, 7)])
        struct["celeb_id"] = np.array([[r[6] for r in rows]], float)
    savemat(str(path), {key: struct})


@pytest.mark.parametrize("key", ["imdb", "wiki"])
def test_imdb_wiki_ages_from_matlab_dates_and_face_filters(tmp_path, key):
    _write_imdb_mat(tmp_path / f"{key}.mat", key)
    result = imdb_wiki.read_imdb_wiki(tmp_path / f"{key}.mat")
    assert result.dataset == key
    assert [(r.age, r.label) for r in result.records] == [(28.0, 28), (28.0, 28), (30.0, 30)]
    assert result.records[0].path == str(tmp_path / "01" / "nm0000001_rm1_1968_2.jpg")
    assert [r.attributes["gender"] for r in result.records] == ["male", "female", "male"]
    assert result.drop_counts() == {
        "no face detected": 1,
        "face score below threshold": 1,
        "second face in the photo": 1,
        "age outside 0-100": 1,
    }
    subjects = [r.subject for r in result.records]
    assert subjects == (["1", "2", "1"] if key == "imdb" else ["", "", ""])
    split = protocols.random_split(result.records, 0.34, seed=0)
    assert len(split.folds[0].test) == 1


def test_imdb_wiki_birth_year_and_bad_files(tmp_path):
    assert imdb_wiki.birth_year(_matlab_datenum(1899, 12, 31) + 0.75) == 1899
    (tmp_path / "imdb.mat").write_bytes(b"not a MATLAB file")
    with pytest.raises(ValueError, match="imdb.mat"):
        imdb_wiki.read_imdb_wiki(tmp_path / "imdb.mat")
    with pytest.raises(FileNotFoundError, match="wiki.mat"):
        imdb_wiki.read_imdb_wiki(tmp_path / "wiki.mat")


def test_utkface_root_reads_every_folder_once_keeping_the_sharper_copy(tmp_path):
    sharp, small = tmp_path / "crop_part1", tmp_path / "aligned_64px"
    sharp.mkdir(), small.mkdir()
    (sharp / "30_0_1_20170101000000001.jpg.chip.jpg").write_bytes(b"x" * 900)
    (small / "30_0_1_20170101000000001.jpg.chip.jpg").write_bytes(b"x" * 100)  # the same face, 64 px
    (small / "45_1_0_20170101000000002.jpg.chip.jpg").write_bytes(b"x" * 100)
    (small / "7_1_2_201701010000000023333.jpg.chip.jpg").write_bytes(b"x")  # 25-digit date: malformed
    result = utkface.read_utkface(tmp_path)
    assert [(r.age, r.attributes["folder"]) for r in result.records] == [(45.0, "aligned_64px"), (30.0, "crop_part1")]
    reasons = dict(result.dropped)
    assert reasons[str(small / "30_0_1_20170101000000001.jpg.chip.jpg")].startswith("duplicate name of")
    assert "name is not" in reasons[str(small / "7_1_2_201701010000000023333.jpg.chip.jpg")]


def test_utkface_shared_root_has_both_folders_and_no_name_twice(shared_data):
    result = utkface.read_utkface(shared_data / "utkface")
    folders = {r.attributes["folder"] for r in result.records}
    assert folders == {"crop_part1", "aligned_64px"}
    names = [utkface.face_name(r.path) for r in result.records]
    assert len(names) == len(set(names)) > 22000


def test_an_age_csv_refuses_one_photo_with_two_ages_and_drops_impossible_ages(tmp_path):
    table = tmp_path / "ages.csv"
    table.write_text("path,age\na.jpg,30\nb.jpg,inf\nc.jpg,-3\na.jpg,30\nd.jpg,nan\n")
    result = csv_files.read_age_csv(table)
    assert [r.path for r in result.records] == [str(tmp_path / "a.jpg")]
    reasons = dict(result.dropped)
    assert reasons["ages.csv:3"].startswith("age is not a finite") and reasons["ages.csv:4"].startswith("age is not")
    assert reasons["ages.csv:5"] == "duplicate of line 2" and reasons["ages.csv:6"].startswith("age is not")
    table.write_text("path,age\na.jpg,30\n./a.jpg,31\n")
    with pytest.raises(ValueError, match="ages.csv:3: ./a.jpg is listed again with age 31 \\(line 2 gives 30\\)"):
        csv_files.read_age_csv(table)


def test_fairface_reads_age_groups_with_their_bounds_and_drops_bad_rows(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "images" / name).write_bytes(b"x")
    rows = [{"id": "a", "filename": "a.jpg", "age": "3-9", "gender": "Female"},
            {"id": "b", "filename": "b.jpg", "age": "70+", "gender": "Male"},
            {"id": "c", "filename": "c.jpg", "age": "old", "gender": "Male"},
            {"id": "d", "filename": "d.jpg", "age": "20-29", "gender": "Male"},
            {"id": "e", "filename": "../a.jpg", "age": "20-29", "gender": "Male"}]
    (tmp_path / "labels.json").write_text(json.dumps(rows))
    result = fairface.read_fairface(tmp_path)
    assert [(r.subject, r.age, r.attributes["age_low"], r.attributes["age_high"], r.attributes["gender"])
            for r in result.records] == [("a", 6.0, "3", "9", "female"), ("b", 79.5, "70", "89", "male")]
    assert sorted(result.drop_counts()) == ["age group 'old' is not LOW-HIGH or LOW+", "image missing",
                                            "no plain file name"]
    assert fairface.group_bounds("0-2") == (0.0, 2.0)


def test_fairface_shared_sample_is_balanced(shared_data):
    result = fairface.read_fairface(shared_data / "fairface")
    assert len(result.records) == 270 and not result.dropped
    groups = collections.Counter((r.attributes["age_group"], r.attributes["gender"]) for r in result.records)
    assert set(groups.values()) == {15} and len(groups) == 18
