"""The results store of a sweep: ``DIR/results.csv`` and ``DIR/sweep.json``.

Rows are appended and flushed one at a time, so a sweep that is interrupted (Ctrl-C, a
killed process, a lost machine, a full disk) keeps every configuration it finished; a
rerun into the same folder reads the keys already present and skips them.  ``sweep.json``
records what the rows were computed from; a rerun from other features, another
normalisation order or other classifier settings is refused, because its rows could not
be mixed with these.

What a rerun trusts is checked: every row must be complete, typed and finite, or the file
is refused naming the line.  The one exception is an unterminated last line, which only
a write cut short (a kill, a full disk) leaves: it is dropped and its configuration
computed again.  One sweep at a time writes to a folder: an advisory lock on
``DIR/.sweep.lock`` (released when the sweep ends or its process dies) makes a second
one refuse.

A row is identified by its experiment and its parameters (:func:`row_key`): the
``params`` column holds every parameter of the configuration as canonical JSON, next to
the typed columns of the common ones (``COLUMNS``), which must agree with it.  After
it come the storage columns measured on the test split (``STORAGE_COLUMNS``: the
entropy of the codes, empty for a stressor without codes, and the packed bytes), then
the sweep's extra score columns (floats).  Results files written before ``params`` or
the storage columns existed still load, the missing cells ``None``: rows without
``params`` get their parameters from the typed columns and the registry's defaults,
which gives the keys their rows have today; resuming such a sweep rewrites the file
once in the current format.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import signal
import sys
from pathlib import Path

from dnnstress._files import write_atomically
from dnnstress.stress.accounting import compression_rate
from dnnstress.sweep.experiments import (TYPED_PARAMS, canonical_params, get_experiment,
                                         is_registered, registered_experiments)

COLUMNS = ("experiment", "kept_dims", "n_levels", "erased_bits", "repeat", "seed",
           "n_features", "kept_fraction", "bits_per_vector", "compression_rate", "score",
           "metric", "relative_score", "wall_time_s")
PARAMS_COLUMN = "params"
STORAGE_COLUMNS = ("entropy_bits_per_vector", "packed_bytes_per_vector")
KEY_COLUMNS = ("experiment", PARAMS_COLUMN)
RESULTS_NAME = "results.csv"
METADATA_NAME = "sweep.json"
LOCK_NAME = ".sweep.lock"
FAULT_VARIABLE = "DNNSTRESS_FAULT_AT"

_INT_COLUMNS = {"kept_dims", "n_levels", "erased_bits", "repeat", "seed", "n_features",
                "bits_per_vector", "packed_bytes_per_vector"}
_FLOAT_COLUMNS = {"kept_fraction", "compression_rate", "score", "relative_score",
                  "wall_time_s", "entropy_bits_per_vector"}
# Typed columns filled exactly when the configuration has that parameter.
_CONFIG_COLUMNS = tuple(p for p in TYPED_PARAMS if p != "kept_dims")
# None when the baseline scored 0, when the stressor has no codes, or in a row of an
# older file that a resume rewrote.
_MAY_BE_EMPTY = {"relative_score", *STORAGE_COLUMNS}
# Columns that older results files lack (read as None).
_OPTIONAL = (PARAMS_COLUMN, *STORAGE_COLUMNS)


def row_key(row: dict) -> tuple[str, str]:
    """The identity of a result row: its experiment and the canonical JSON of its
    parameters (a row of an older file gets the key it would have today)."""
    return row["experiment"], canonical_params(row[PARAMS_COLUMN])


def header(extra_columns=()) -> tuple[str, ...]:
    """The columns of a results file: ``COLUMNS``, ``params``, ``STORAGE_COLUMNS``, then
    the sweep's extra score columns."""
    return (*COLUMNS, PARAMS_COLUMN, *STORAGE_COLUMNS, *extra_columns)


def read_results(out_dir, *, allow_duplicates: bool = False) -> list[dict]:
    """The rows of ``DIR/results.csv`` with typed values.

    Integer columns come back as ``int``, fractional ones (and extra score columns) as
    ``float``, empty cells (and columns older files lack) as ``None``; ``experiment``
    and ``metric`` stay strings, ``params`` is a dict (filled in for files older than
    that column).  Experiments must be registered
    (:func:`~dnnstress.sweep.register_experiment`) or recorded in the folder's
    ``sweep.json``.  Rows appear in the order they were written; an unterminated last
    line (a row still being written, or cut by a kill) is left out.  ``out_dir`` may
    also be the path of the CSV file itself.
    A row repeating an earlier row's key is refused, or with ``allow_duplicates``
    returned too (``dnnstress report`` uses the first of each and warns).

    Raises
    ------
    FileNotFoundError
        No results file there.
    ValueError
        A row is garbled (the message names the file and the line).
    """
    path = Path(out_dir)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no sweep results at {path}")
    complete, _ = _split_unfinished(path.read_bytes())
    known = _recorded_experiments(path.parent / METADATA_NAME)
    return _parse(path, complete, known=known, allow_duplicates=allow_duplicates)[0]


class ResultsStore:
    """Appends result rows to ``DIR/results.csv``; knows which keys are already done.

    Use it as a context manager: entering takes the folder's lock (refusing when
    another sweep holds it), leaving releases it.

    Parameters
    ----------
    out_dir : path
        The sweep folder; created if missing.
    identity : dict
        What the rows depend on (features fingerprint, normalisation, classifier and
        seeds).  Stored in ``sweep.json`` on the first run and compared on every rerun.
    n_features : int, optional
        Width of the features; a row of another width is refused.
    extra_columns : tuple of str
        Score columns after ``params`` (floats); an existing file must have the same.
    identity_defaults : dict, optional
        What an older ``sweep.json`` that does not record an identity entry meant by
        it (``{"scores": ...}``: the SVM alone).
    """

    def __init__(self, out_dir, identity: dict, n_features: int | None = None,
                 extra_columns=(), identity_defaults=None):
        self.out_dir = Path(out_dir)
        self.identity = identity
        self.identity_defaults = identity_defaults or {}
        self.n_features = n_features
        self.columns = header(tuple(extra_columns))
        self._old_rows = None  # rows of an older format, rewritten by start_run
        self.results_path = self.out_dir / RESULTS_NAME
        self.metadata_path = self.out_dir / METADATA_NAME
        self._lock_fd = None
        self._metadata = None
        self._n_rows = 0

    def __enter__(self) -> ResultsStore:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"{self.out_dir} is a file; a sweep writes a folder "
                             f"(results.csv, sweep.json): give --out a folder path")
        lock_path = self.out_dir / LOCK_NAME
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise _write_error(error, lock_path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"another sweep is writing to {self.out_dir} (it holds "
                               f"{lock_path}); wait for it to end, or use another --out "
                               f"folder") from None
        self._lock_fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def open(self) -> list[dict]:
        """Check ``sweep.json``, repair and check ``results.csv``; return its rows (typed)."""
        self._metadata = self._check_identity()
        self._remove_stale_temporaries()
        rows = self._read_and_repair()
        self._n_rows = len(rows)
        return rows

    def start_run(self, run_info: dict) -> None:
        """Record a run that will compute rows in ``sweep.json``; write the CSV header
        if the results file is new."""
        metadata = {**self._metadata, "runs": [*self._metadata.get("runs", []), run_info]}
        text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"

        def write_metadata(tmp: Path) -> None:
            tmp.write_text(text)
            _fault("sweep-json")  # killed with the new file written, not yet renamed

        self._write(self.metadata_path, lambda: write_atomically(self.metadata_path,
                                                                 write_metadata))
        self._metadata = metadata
        if (not self.results_path.exists() or self.results_path.stat().st_size == 0
                or self._old_rows is not None):
            # A file of an older format is rewritten in this one (same rows).
            text = "".join(_csv_line(line) for line in
                           [self.columns, *map(self._cells, self._old_rows or [])])
            self._write(self.results_path, lambda: write_atomically(
                self.results_path, lambda tmp: tmp.write_text(text)))
            self._old_rows = None

    def append(self, row: dict) -> None:
        """Write one row to the operating system before returning.

        On a failed write (a full disk) the file is cut back to its last whole row and
        a one-line ``RuntimeError`` names the path.
        """
        data = _csv_line(self._cells(row)).encode()

        def write() -> None:
            fd = os.open(self.results_path, os.O_WRONLY | os.O_APPEND)
            size = os.fstat(fd).st_size
            try:
                _fault("row-write", lambda: os.write(fd, data[:len(data) // 2]))
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                _truncate_quietly(fd, size)
                raise
            finally:
                os.close(fd)

        self._write(self.results_path, write)
        self._n_rows += 1

    def _cells(self, row: dict) -> list[str]:
        return [canonical_params(row[column]) if column == PARAMS_COLUMN
                else _cell(row.get(column)) for column in self.columns]

    def _write(self, path: Path, write) -> None:
        try:
            write()
        except OSError as error:
            raise _write_error(error, path, self._n_rows, self.results_path) from None

    def _check_identity(self) -> dict:
        if not self.metadata_path.exists():
            if self.results_path.exists() and _split_unfinished(
                    self.results_path.read_bytes())[0]:
                raise ValueError(f"{self.results_path} exists without {METADATA_NAME}: "
                                 f"cannot tell what its rows were computed from; use a "
                                 f"new --out folder")
            return dict(self.identity)
        metadata = _read_metadata(self.metadata_path)
        differences = [f"{name}: folder has {metadata.get(name)!r}, this run {value!r}"
                       for name, value in self.identity.items()
                       if metadata.get(name, self.identity_defaults.get(name)) != value]
        if differences:
            raise ValueError(
                f"{self.out_dir} holds a sweep of different features or settings, so its "
                f"rows cannot be resumed or mixed with this run ("
                + "; ".join(differences) + "); use a new --out folder")
        return metadata

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a sweep killed while replacing sweep.json or the header;
        nobody else writes them while this sweep holds the lock."""
        for name in (METADATA_NAME, RESULTS_NAME):
            for tmp in self.out_dir.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    def _read_and_repair(self) -> list[dict]:
        path = self.results_path
        if not path.exists():
            return []
        if not path.is_file():
            raise ValueError(f"{path} is not a file; move it away or use a new --out folder")
        complete, unfinished = _split_unfinished(path.read_bytes())
        if unfinished:
            line = complete.count(b"\n") + 1
            self._write(path, lambda: os.truncate(path, len(complete)))
            print(f"dnnstress: {path}: dropped line {line}, cut short by an interrupted "
                  f"write; its configuration is computed again", file=sys.stderr)
        rows, columns = _parse(path, complete, self.n_features,
                               known=_experiments_of(self._metadata))
        if columns is not None and _older_format(columns, self.columns):
            self._old_rows = rows
        elif columns is not None and columns != self.columns:
            raise ValueError(f"{path} has the columns {', '.join(columns)}, this sweep "
                             f"writes {', '.join(self.columns)}: its rows cannot be "
                             f"resumed or mixed with this run; use a new --out folder")
        return rows


def _read_metadata(path: Path) -> dict:
    try:
        metadata = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}; use a new --out folder") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("runs", []), list):
        raise ValueError(f"{path} is not a sweep's metadata (a JSON object with a list "
                         f"of runs); move it away or use a new --out folder")
    return metadata


def _recorded_experiments(path: Path) -> set[str]:
    """Experiment names the runs of a ``sweep.json`` recorded (none if unreadable)."""
    try:
        return _experiments_of(json.loads(path.read_text()))
    except (OSError, ValueError):
        return set()


def _experiments_of(metadata) -> set[str]:
    runs = metadata.get("runs", []) if isinstance(metadata, dict) else []
    return {name for run in runs if isinstance(run, dict)
            for name in run.get("experiments", []) if isinstance(name, str)}


def _split_unfinished(data: bytes) -> tuple[bytes, bytes]:
    """``data`` up to its last line end, and the unterminated rest."""
    end = data.rfind(b"\n") + 1
    return data[:end], data[end:]


def _parse(path: Path, data: bytes, n_features: int | None = None,
           allow_duplicates: bool = False, known=frozenset()):
    """Typed, checked rows of a results file's complete lines, and its columns (None
    for an empty file); ValueError names a bad line.  ``known``: experiment names
    accepted besides the registered ones (those the folder's sweep.json recorded)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise _garbled(path, line, "it is not UTF-8 text") from None
    if not text:
        return [], None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        columns = tuple(next(reader))
        common = tuple(column for column in columns if column in header())
        if (not (common == header() or _older_format(common, header()))
                or columns[:len(common)] != common or len(set(columns)) != len(columns)):
            raise ValueError(f"{path} does not have the sweep results columns "
                             f"({', '.join(header())}[, extra scores]); use a new --out "
                             f"folder")
        rows, seen = [], {}
        for cells in reader:
            try:
                row = _checked_row(cells, columns, n_features, known)
            except ValueError as error:
                raise _garbled(path, reader.line_num, str(error)) from None
            key = row_key(row)
            if key in seen and not allow_duplicates:
                raise _garbled(path, reader.line_num,
                               f"it repeats the configuration of line {seen[key]}")
            seen.setdefault(key, reader.line_num)
            rows.append(row)
    except csv.Error as error:
        raise _garbled(path, reader.line_num, str(error)) from None
    return rows, columns


def _older_format(columns: tuple, current: tuple) -> bool:
    """Whether ``columns`` are the ``current`` ones without some that older files lack."""
    missing = set(current) - set(columns)
    return (bool(missing) and missing <= set(_OPTIONAL)
            and tuple(column for column in current if column in columns) == columns)


def _checked_row(cells: list[str], columns: tuple, n_features: int | None, known) -> dict:
    if len(cells) != len(columns):
        raise ValueError(f"it has {len(cells)} cells, not {len(columns)}")
    text = dict(zip(columns, cells))
    experiment = text["experiment"]
    registered = is_registered(experiment)
    if not registered and (experiment not in known or PARAMS_COLUMN not in text):
        raise ValueError(f"unknown experiment {experiment!r}: neither registered "
                         f"({', '.join(registered_experiments())}) nor recorded in "
                         f"{METADATA_NAME}; register it (dnnstress.sweep."
                         f"register_experiment) before reading")
    row = {column: None for column in _OPTIONAL if column not in text}
    for column, cell in text.items():
        if column == PARAMS_COLUMN:
            row[column] = _params(cell)
        elif cell == "":
            if column not in _CONFIG_COLUMNS and column not in _MAY_BE_EMPTY:
                raise ValueError(f"{column} is empty")
            row[column] = None
        elif column in _INT_COLUMNS:
            row[column] = _number(cell, column, int)
        elif column in _FLOAT_COLUMNS or column not in COLUMNS:  # extra scores
            row[column] = _number(cell, column, float)
        else:
            row[column] = cell
    if registered:
        row[PARAMS_COLUMN] = _with_defaults(row)
    _check_params(row, text)
    if not 0 <= row["score"] <= 1:
        raise ValueError(f"score {row['score']!r} is not in [0, 1]")
    if not 1 <= row["kept_dims"] <= row["n_features"]:
        raise ValueError(f"kept_dims {row['kept_dims']} is not in 1..n_features")
    if n_features is not None and row["n_features"] != n_features:
        raise ValueError(f"n_features is {row['n_features']}, these features have "
                         f"{n_features}: the row comes from other features")
    # The storage columns must follow this version's accounting (Q-B's changed: a row
    # of an older dnnstress would otherwise be mixed in with other figures).
    declared = get_experiment(experiment).bits if registered else None
    bits = (row["bits_per_vector"] if declared is None
            else declared(row[PARAMS_COLUMN], row["n_features"]))
    if row["bits_per_vector"] != bits or not math.isclose(
            row["compression_rate"], compression_rate(row["n_features"], bits), abs_tol=1e-9):
        raise ValueError(f"bits_per_vector {row['bits_per_vector']} and compression_rate "
                         f"{row['compression_rate']} do not follow this dnnstress's "
                         f"accounting ({bits} bits): the row was written by another version")
    packed = row["packed_bytes_per_vector"]
    if packed is not None and 8 * packed < bits:
        raise ValueError(f"packed_bytes_per_vector {packed} cannot hold its "
                         f"bits_per_vector {bits}")
    return row


def _params(cell: str) -> dict:
    try:
        params = json.loads(cell)
    except json.JSONDecodeError:
        params = None
    if not isinstance(params, dict) or not all(
            isinstance(v, (str, int, float, bool)) for v in params.values()):
        raise ValueError(f"params {cell!r} is not a JSON object of parameter values")
    return params


def _with_defaults(row: dict) -> dict:
    """The parameters of a row of a registered experiment, as a sweep would record them
    today.  A row that does not record a parameter (one written before the params
    column, or before its experiment had that parameter) takes the registry's default;
    a row without params, its typed columns."""
    experiment = get_experiment(row["experiment"])
    recorded = row.get(PARAMS_COLUMN)
    if recorded is None:
        recorded = {name: row[name] for name in TYPED_PARAMS
                    if name in experiment.param_names}
        for name, value in recorded.items():
            if value is None:
                raise ValueError(f"{name} is empty in a {row['experiment']} row")
    defaults = {name: value for name, value in experiment.defaults().items()
                if name not in TYPED_PARAMS}
    return experiment.canonical({**defaults, **recorded})


def _check_params(row: dict, text: dict) -> None:
    """The typed configuration cells must say what ``params`` says (filled exactly
    for the parameters the configuration has), and a registered experiment's
    parameters must be its own."""
    params, experiment = row[PARAMS_COLUMN], row["experiment"]
    for column in _CONFIG_COLUMNS:
        if (row[column] is None) != (column not in params):
            state = "empty" if row[column] is None else f"{text[column]!r}"
            raise ValueError(f"{column} is {state} in a {experiment} row")
        if row[column] is not None and row[column] != params[column]:
            raise ValueError(f"{column} is {row[column]}, its params say "
                             f"{params[column]!r}")
    if "kept_dims" in params and params["kept_dims"] != row["kept_dims"]:
        raise ValueError(f"kept_dims is {row['kept_dims']}, its params say "
                         f"{params['kept_dims']!r}")
    if is_registered(experiment):
        names = get_experiment(experiment).param_names
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(f"params has {', '.join(unknown)}, not parameters of "
                             f"{experiment} ({', '.join(names) or 'it has none'})")


def _number(cell: str, column: str, kind):
    try:
        value = kind(cell)
    except ValueError:
        raise ValueError(f"{column} {cell!r} is not {'an integer' if kind is int else 'a number'}"
                         ) from None
    if kind is float and not math.isfinite(value) or kind is int and value < 0:
        raise ValueError(f"{column} {cell!r} is out of range")
    return value


def _garbled(path: Path, line: int, problem: str) -> ValueError:
    return ValueError(f"{path}, line {line}: garbled result row ({problem}); fix or "
                      f"delete that line, or sweep into a new --out folder")


def _write_error(error: OSError, path: Path, n_rows: int | None = None,
                 results_path: Path | None = None) -> RuntimeError:
    reason = error.strerror or str(error)
    kept = ("" if n_rows is None else
            f"; the {n_rows} row(s) already in {results_path} are kept")
    return RuntimeError(f"cannot write {path}: {reason} [errno {error.errno}]{kept}; "
                        f"free space (or fix the folder) and rerun the same command to "
                        f"resume")


def _truncate_quietly(fd: int, size: int) -> None:
    """Cut a half-written row off; if even that fails, the next run drops it."""
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def _csv_line(cells) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _fault(point: str, before_kill=None) -> None:
    """Fault injection for the crash tests: ``DNNSTRESS_FAULT_AT=point:n`` kills this
    process (SIGKILL) the n-th time it reaches ``point``, after ``before_kill()``;
    ``point:n:STOP`` stops it instead (SIGSTOP), to hold it there with its lock."""
    wanted = os.environ.get(FAULT_VARIABLE, "").split(":")
    if wanted[0] != point or len(wanted) not in (2, 3):
        return
    _FAULT_COUNTS[point] = _FAULT_COUNTS.get(point, 0) + 1
    if str(_FAULT_COUNTS[point]) == wanted[1]:
        if before_kill is not None:
            before_kill()
        os.kill(os.getpid(), getattr(signal, "SIG" + (wanted[2:] or ["KILL"])[0]))


_FAULT_COUNTS: dict[str, int] = {}


def _cell(value) -> str:
    """CSV text of a value: '' for None, shortest round-trip text for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
