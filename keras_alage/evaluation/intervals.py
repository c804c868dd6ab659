"""Age intervals that hold: split-conformal, per band of the predicted age (Mondrian).

On calibration faces (labelled, used for nothing else) the residuals r = true - predicted are
gathered per band of the *predicted* age (serving knows only that). A band's interval is
[predicted + lower, predicted + upper] with `lower` the floor((n + 1) a/2)-th smallest residual and
`upper` the ceil((n + 1)(1 - a/2))-th: for faces exchangeable with the band's calibration faces
each side misses at most a/2 of true ages, so the interval holds at least 1 - a of them (Vovk et
al.; Lei et al. 2018). A band with fewer than `min_faces` calibration faces borrows the residuals of
the bands next to it until the span holds enough (`borrowed_spans`): a thin old band borrows from
middle age, never from children. With `groups` (in a release: face-api's predicted sex) each group
gets its own bands and offsets. Nothing guarantees coverage on another population: `coverage`
measures it where labels exist.

With `scale_floor` the residuals are first divided by (floor + spread), where spread is a
label-free measure of doubt known at serving (in a release of several networks: how far their
answers lie apart), and the offsets are multiplied back by it: intervals widen where the networks
disagree, which on a new population is where they err (normalised conformal; Papadopoulos et al.).
"""

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

BAND_EDGES = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0)  # predicted-age bands: <10, 10-19, ..., 60+
COVERAGE = 0.9


@dataclasses.dataclass(frozen=True)
class IntervalTable:
    """Per group (e.g. predicted sex) and predicted-age band, the residual offsets (years) of a
    calibrated interval. Offsets are stored group by group: index = group * bands + band; a table
    without `groups` has one group."""

    edges: Tuple[float, ...]
    lower: Tuple[float, ...]  # one per group and band
    upper: Tuple[float, ...]
    coverage: float
    counts: Tuple[int, ...]  # calibration faces behind each band's offsets (its borrowed span's)
    measured_on: str = ""
    scale_floor: Optional[float] = None  # offsets are in units of (scale_floor + spread) years
    groups: Tuple[str, ...] = ()  # names of the groups, in order (`group_index` gives a face's)
    nominal: Optional[float] = None  # the conformal level fitted, where it differs from `coverage`

    @property
    def bands(self) -> int:
        return len(self.edges) + 1

    def scale(self, spread):
        """The factor each face's offsets take (1 without a scale)."""
        if self.scale_floor is None:
            return 1.0
        if spread is None:
            raise ValueError("this interval table scales by a spread; give it.")
        return self.scale_floor + spread

    def __post_init__(self):
        cells = self.bands * max(1, len(self.groups))
        numbers = [*self.edges, *self.lower, *self.upper, self.coverage] + (
            [self.scale_floor] if self.scale_floor is not None else [])
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ValueError("an interval table's edges, offsets, coverage and scale must be finite numbers.")
        if not (len(self.lower) == len(self.upper) == len(self.counts) == cells):
            raise ValueError(f"an interval table over {cells} groups and bands needs {cells} lower, upper and count "
                             "values.")
        if list(self.edges) != sorted(self.edges) or not 0 < self.coverage < 1:
            raise ValueError("band edges must rise and coverage lie in (0, 1).")
        if any(lo > hi for lo, hi in zip(self.lower, self.upper)):
            raise ValueError("a band's lower offset exceeds its upper one.")
        if self.scale_floor is not None and not self.scale_floor > 0:
            raise ValueError(f"scale_floor must be positive; received {self.scale_floor}.")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"group names repeat: {self.groups}.")

    def cells(self, predicted, group=None) -> np.ndarray:
        """Index into lower/upper of each face: its group (an index into `groups`) and band."""
        bands = band_of(predicted, self.edges)
        if not self.groups:
            return bands
        if group is None:
            raise ValueError(f"this interval table is per group ({', '.join(self.groups)}); give each face's.")
        return np.asarray(group, np.int64) * self.bands + bands

    def group_index(self, names) -> np.ndarray:
        """Group names -> indices into `groups` (refused for a name the table does not have)."""
        index = {name: i for i, name in enumerate(self.groups)}
        try:
            return np.array([index[name] for name in names], np.int64)
        except KeyError as error:
            raise ValueError(f"group {error} is not one of the table's {self.groups}.") from None

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> "IntervalTable":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def band_of(predicted, edges: Sequence[float] = BAND_EDGES) -> np.ndarray:
    """Band index of each predicted age (0: below the first edge)."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(predicted, np.float64), side="right")


def conformal_offsets(residuals, coverage: float) -> Tuple[float, float]:
    """(lower, upper) residual quantiles of split-conformal with a/2 on each side; with too few
    residuals for that coverage the extreme residual stands in (then no guarantee holds)."""
    r = np.sort(np.asarray(residuals, np.float64))
    n = len(r)
    if n == 0:
        raise ValueError("no calibration residuals.")
    miss = (1.0 - coverage) / 2.0
    low_rank = max(1, math.floor((n + 1) * miss + 1e-9))  # 1e-9: (n + 1) * 0.95 is 95.00000000000001
    high_rank = min(n, math.ceil((n + 1) * (1.0 - miss) - 1e-9))
    return float(r[low_rank - 1]), float(r[high_rank - 1])


def borrowed_spans(counts: Sequence[int], min_faces: int) -> List[List[int]]:
    """For each band, the bands whose residuals it uses: itself where it has `min_faces` faces,
    else itself widened one neighbour at a time (the side with more faces first) until the span
    holds enough or covers every band. A thin band borrows from the bands next to it; a band with
    enough faces keeps its own."""
    spans = []
    for band in range(len(counts)):
        low = high = band
        while sum(counts[low:high + 1]) < min_faces and (low > 0 or high < len(counts) - 1):
            left = counts[low - 1] if low > 0 else -1
            right = counts[high + 1] if high < len(counts) - 1 else -1
            if right > left:
                high += 1
            else:
                low -= 1
        spans.append(list(range(low, high + 1)))
    return spans


def fit(predicted, truth, coverage: float = COVERAGE, edges: Sequence[float] = BAND_EDGES,
        min_faces: int = 50, measured_on: str = "", spread=None, scale_floor: Optional[float] = None,
        groups=None, nominal: Optional[float] = None) -> IntervalTable:
    """The table of calibration faces' (predicted, true) ages (and spreads, with `scale_floor`).

    `groups`: each face's group name (e.g. its predicted sex), fitted apart; `nominal`: the
    conformal level to fit (default `coverage`), higher where the table is meant to hold on
    populations less kind than the calibration faces (chosen on held-out populations)."""
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    if predicted.shape != truth.shape or predicted.ndim != 1 or not len(predicted):
        raise ValueError("predicted and true ages must be two equal, non-empty lists.")
    if not (np.isfinite(predicted).all() and np.isfinite(truth).all()):
        raise ValueError("calibration ages must be finite.")
    level = coverage if nominal is None else nominal
    if not 0 < level < 1:
        raise ValueError(f"the nominal level must lie in (0, 1); received {level}.")
    residuals = truth - predicted
    if scale_floor is not None:
        if spread is None:
            raise ValueError("a scaled table (scale_floor) is fitted on the faces' spreads; give them.")
        residuals = residuals / (scale_floor + np.asarray(spread, np.float64))
    bands = band_of(predicted, edges)
    names = tuple(sorted(set(np.asarray(groups, dtype=object).tolist()))) if groups is not None else ()
    members = (np.asarray(groups, dtype=object) if groups is not None else np.zeros(len(truth), object))
    lower, upper, counts = [], [], []
    for name in (names or (0,)):
        own = residuals[members == name]
        own_bands = bands[members == name]
        per_band = np.bincount(own_bands, minlength=len(edges) + 1).tolist()
        for span in borrowed_spans(per_band, min_faces):
            chosen = np.isin(own_bands, span)
            lo, hi = conformal_offsets(own[chosen] if chosen.any() else residuals, level)
            lower.append(lo)
            upper.append(hi)
            counts.append(int(chosen.sum()))
    return IntervalTable(tuple(float(e) for e in edges), tuple(lower), tuple(upper), coverage, tuple(counts),
                         measured_on, scale_floor, names, None if nominal is None else float(nominal))


def apply(table: IntervalTable, predicted, spread=None, group=None) -> Tuple[np.ndarray, np.ndarray]:
    """(low, high) of each predicted age; ages are never negative. `group`: each face's index into
    `table.groups` (a table with groups needs it)."""
    predicted = np.asarray(predicted, np.float64)
    scale = table.scale(None if spread is None else np.asarray(spread, np.float64))
    cells = table.cells(predicted, group)
    low = predicted + scale * np.asarray(table.lower)[cells]
    high = predicted + scale * np.asarray(table.upper)[cells]
    return np.maximum(low, 0.0), np.maximum(high, 0.0)


def apply_tf(table: IntervalTable, predicted, spread=None, group=None):
    """`apply` inside a serving graph (float32 tensors; `group` int32 indices where the table has groups)."""
    import tensorflow as tf

    scale = table.scale(spread)
    cells = tf.searchsorted(tf.constant(table.edges, tf.float32), predicted, side="right")
    if table.groups:
        if group is None:
            raise ValueError(f"this interval table is per group ({', '.join(table.groups)}); give each face's.")
        cells = tf.cast(group, cells.dtype) * table.bands + cells
    low = predicted + scale * tf.gather(tf.constant(table.lower, tf.float32), cells)
    high = predicted + scale * tf.gather(tf.constant(table.upper, tf.float32), cells)
    return tf.maximum(low, 0.0), tf.maximum(high, 0.0)


def wilson(hits: int, n: int, z: float = 1.959964) -> Tuple[float, float]:
    """95 % Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def coverage(low, high, truth, groups: Optional[Sequence] = None) -> Dict[str, dict]:
    """Share of true ages inside their intervals, with its 95 % interval and the mean width; by
    group where `groups` is given (e.g. true-age bands), "all" always."""
    low, high, truth = (np.asarray(v, np.float64) for v in (low, high, truth))
    inside = (truth >= low) & (truth <= high)
    width = high - low
    keys = np.asarray(groups, dtype=object) if groups is not None else None
    result = {}
    names = ["all"] + (sorted(set(keys.tolist()), key=str) if keys is not None else [])
    for name in names:
        chosen = np.ones(len(truth), bool) if name == "all" else keys == name
        n, hits = int(chosen.sum()), int(inside[chosen].sum())
        result[str(name)] = {"faces": n, "coverage": hits / n if n else float("nan"),
                             "coverage_95": list(wilson(hits, n)),
                             "mean_width": float(width[chosen].mean()) if n else float("nan")}
    return result
