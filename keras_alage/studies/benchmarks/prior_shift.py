"""Does adapting to a population's age prior help? (`benchmarks/prior_shift.py`) Measured on
validation faces resampled to other age mixes, before it is used anywhere else.

The model answers its build's training faces (their mean answer is its prior,
`prior_shift.source_prior`) and its held-out faces (centre crop). The held-out faces are then drawn,
with replacement, into populations whose age bands follow the fixed mixes of SCENARIOS. Each
population is answered as is and after `prior_shift.adapt` at every smoothing, which sees the
answers only, never the labels. Reported: MAE, and the change against answering as is, with the
2.5-97.5% range over the draws.
"""

import json
from typing import Sequence

import numpy as np

from keras_alage.evaluation import metrics, run_folders
from keras_alage.models import age_model, release
from keras_alage.serving import prior_shift
from alage_pipelines import files

BANDS = ((0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 200))
# Shares of the age bands above, fixed before any result: None keeps the held-out faces' own mix.
SCENARIOS = {
    "held-out mix (no shift)": None,
    "children and teenagers": (0.35, 0.35, 0.10, 0.08, 0.06, 0.04, 0.02),
    "young adults": (0.02, 0.08, 0.50, 0.30, 0.06, 0.02, 0.02),
    "older people": (0.02, 0.03, 0.05, 0.10, 0.20, 0.30, 0.30),
}


def draw_population(ages: np.ndarray, shares, count: int, rng) -> np.ndarray:
    """Indices of `count` faces drawn with replacement so that their bands follow `shares`."""
    if shares is None:
        return rng.integers(0, len(ages), count)
    bands = rng.choice(len(BANDS), size=count, p=np.asarray(shares) / np.sum(shares))
    members = [np.flatnonzero((ages >= low) & (ages < high)) for low, high in BANDS]
    return np.array([rng.choice(members[b]) for b in bands])


def measure(model_path: str, data_dir: str, faces: int, draws: int, smoothing: Sequence[float], seed: int,
            output: str) -> str:
    """The study: the model's prior from `data_dir`'s training side, its held-out answers drawn into
    `draws` populations of `faces` faces per scenario, each answered as is and adapted at every
    `smoothing`; writes `output`.json and .md and returns the markdown."""
    model = release.load_model(model_path)
    source = prior_shift.source_prior(run_folders.answer_side(model, data_dir, "train")["combined"])
    held_out = run_folders.answer_side(model, data_dir, "test")
    classes = np.asarray(age_model.class_ages_of(model), np.float64)
    probs, ages = held_out["combined"], held_out["age"].astype(np.float64)
    rng = np.random.default_rng(seed)
    table = {}
    for name, shares in SCENARIOS.items():
        rows = {"as is": []} | {f"adapted, smoothing {s:g}": [] for s in smoothing}
        for _ in range(draws):
            chosen = draw_population(ages, shares, faces, rng)
            plain = metrics.mean_absolute_error(metrics.expected_age(probs[chosen], classes), ages[chosen])
            rows["as is"].append(plain)
            for s in smoothing:
                adapted, _ = prior_shift.adapt(probs[chosen], source, s)
                rows[f"adapted, smoothing {s:g}"].append(
                    metrics.mean_absolute_error(metrics.expected_age(adapted, classes), ages[chosen]))
        base = np.array(rows["as is"])
        table[name] = {row: {"mae": float(np.mean(v)),
                             "change": float(np.mean(np.array(v) - base)),
                             "change_range": [float(q) for q in np.percentile(np.array(v) - base, [2.5, 97.5])]}
                       for row, v in rows.items()}
    adapted_rows = [row for row in next(iter(table.values())) if row != "as is"]
    mean_change = {row: float(np.mean([table[name][row]["change"] for name in table])) for row in adapted_rows}
    chosen = min(adapted_rows, key=lambda row: (mean_change[row], row))
    result = {"chosen": chosen, "chosen_smoothing": smoothing[adapted_rows.index(chosen)],
              "mean_change": mean_change, "model": files.portable_path(model_path),
              "data_dir": files.portable_path(data_dir),
              "faces": faces, "draws": draws, "seed": seed, "scenarios": dict(SCENARIOS),
              "bands": BANDS, "results": table}
    lines = [f"# Adapting to a population's age prior: {faces} held-out faces per population, "
             f"{draws} draws", "",
             "MAE (mean over draws); change against answering as is [2.5-97.5% over draws].", ""]
    rows = list(next(iter(table.values())))
    lines += ["| population | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for name, cells in table.items():
        text = [f"{cells[r]['mae']:.2f}" if r == "as is" else
                "{:.2f} ({:+.2f} [{:+.2f}, {:+.2f}])".format(cells[r]["mae"], cells[r]["change"], *cells[r]["change_range"])
                for r in rows]
        lines.append(f"| {name} | " + " | ".join(text) + " |")
    lines += ["", "Mean change over the populations: " + "; ".join(f"{r}: {c:+.3f}" for r, c in mean_change.items())
              + f". Chosen (lowest): {chosen}."]
    command = (f"python benchmarks/prior_shift.py --faces={faces} --draws={draws} "
               f"--smoothing={','.join(f'{s:g}' for s in smoothing)}")
    lines += ["", "Band shares (0-9, ..., 60+): " + "; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()),
              "", f"Command: `{command}`"]
    files.write_atomically(output + ".json", json.dumps(result, indent=1))
    files.write_atomically(output + ".md", "\n".join(lines) + "\n")
    return "\n".join(lines)

