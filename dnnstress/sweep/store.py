"""The results store of a sweep: ``DIR/results.csv`` and ``DIR/sweep.json``.

Rows are appended and flushed one at a time, so a sweep that is interrupted (Ctrl-C, a
killed process, a lost machine) keeps every configuration it finished; a rerun into the
same folder reads the keys already present and skips them.  ``sweep.json`` records what
the rows were computed from; a rerun from other features, another normalisation order or
other classifier settings is refused, because its rows could not be mixed with these.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dnnstress._files import write_json_atomically

COLUMNS = ("experiment", "kept_dims", "n_levels", "erased_bits", "repeat", "seed",
           "n_features", "kept_fraction", "bits_per_vector", "compression_rate", "score",
           "metric", "relative_score", "wall_time_s")
KEY_COLUMNS = ("experiment", "kept_dims", "n_levels", "erased_bits", "repeat")
RESULTS_NAME = "results.csv"
METADATA_NAME = "sweep.json"

_INT_COLUMNS = {"kept_dims", "n_levels", "erased_bits", "repeat", "seed", "n_features",
                "bits_per_vector"}
_FLOAT_COLUMNS = {"kept_fraction", "compression_rate", "score", "relative_score",
                  "wall_time_s"}


def row_key(row: dict) -> tuple[str, ...]:
    """The identity of a result row: its key columns as CSV text ('' where empty)."""
    return tuple(_cell(row.get(column)) for column in KEY_COLUMNS)


def read_results(out_dir) -> list[dict]:
    """The rows of ``DIR/results.csv`` with typed values.

    Integer columns come back as ``int``, fractional ones as ``float``, empty cells as
    ``None``; ``experiment`` and ``metric`` stay strings.  Rows appear in the order they
    were written.  ``out_dir`` may also be the path of the CSV file itself.
    """
    path = Path(out_dir)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no sweep results at {path}")
    return [_typed(row) for row in _read_rows(path)]


class ResultsStore:
    """Appends result rows to ``DIR/results.csv``; knows which keys are already done.

    Parameters
    ----------
    out_dir : path
        The sweep folder; created if missing.
    identity : dict
        What the rows depend on (features fingerprint, normalisation, classifier and
        seeds).  Stored in ``sweep.json`` on the first run and compared on every rerun.
    """

    def __init__(self, out_dir, identity: dict):
        self.out_dir = Path(out_dir)
        self.identity = identity
        self.results_path = self.out_dir / RESULTS_NAME
        self.metadata_path = self.out_dir / METADATA_NAME

    def open(self, run_info: dict) -> list[dict]:
        """Check (or create) ``sweep.json``, repair the CSV tail, return the existing rows."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metadata = self._check_identity()
        metadata.setdefault("runs", []).append(run_info)
        write_json_atomically(self.metadata_path, metadata)
        if not self.results_path.exists():
            with open(self.results_path, "w", newline="") as stream:
                csv.writer(stream, lineterminator="\n").writerow(COLUMNS)
            return []
        _drop_partial_last_line(self.results_path)
        return _read_rows(self.results_path)

    def append(self, row: dict) -> None:
        """Write one row and flush it to the operating system before returning."""
        with open(self.results_path, "a", newline="") as stream:
            csv.writer(stream, lineterminator="\n").writerow(
                [_cell(row.get(column)) for column in COLUMNS])
            stream.flush()

    def _check_identity(self) -> dict:
        if not self.metadata_path.exists():
            if self.results_path.exists():
                raise ValueError(f"{self.results_path} exists without {METADATA_NAME}: "
                                 f"cannot tell what its rows were computed from; use a "
                                 f"new --out folder")
            return dict(self.identity)
        try:
            metadata = json.loads(self.metadata_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.metadata_path} is not valid JSON: {error}") from None
        differences = [f"{name}: folder has {metadata.get(name)!r}, this run {value!r}"
                       for name, value in self.identity.items()
                       if metadata.get(name) != value]
        if differences:
            raise ValueError(
                f"{self.out_dir} holds a sweep of different features or settings, so its "
                f"rows cannot be resumed or mixed with this run ("
                + "; ".join(differences) + "); use a new --out folder")
        return metadata


def _read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} does not have the sweep results columns "
                             f"({', '.join(COLUMNS)})")
        # A row cut short by a kill mid-write has missing cells: it was never finished.
        return [row for row in reader if None not in row.values()
                and None not in row and row["metric"]]


def _drop_partial_last_line(path: Path) -> None:
    """Truncate an unterminated last line left by a process killed while writing it."""
    with open(path, "rb+") as stream:
        data = stream.read()
        if data and not data.endswith(b"\n"):
            stream.truncate(data.rfind(b"\n") + 1)


def _typed(row: dict) -> dict:
    typed = {}
    for column in COLUMNS:
        text = row[column]
        if text == "":
            typed[column] = None
        elif column in _INT_COLUMNS:
            typed[column] = int(text)
        elif column in _FLOAT_COLUMNS:
            typed[column] = float(text)
        else:
            typed[column] = text
    return typed


def _cell(value) -> str:
    """CSV text of a value: '' for None, shortest round-trip text for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
