"""Campaigns: many sweeps (features files x experiment grids) in one resumable run.

A campaign file (TOML, see docs/campaigns.md) names features -- ``.npz`` files, or
extraction recipes (a model, its layers, a data set) -- and experiment grids; every
(features, grid) pair is one sweep (:class:`dnnstress.sweep.Sweep`) in its own folder
``DIR/<features>.<grid>/`` with today's ``results.csv`` and ``sweep.json``::

    name = "layers"

    [[features]]
    file = "voc2007-vggm-L19.npz"          # relative to the campaign file

    [[features]]
    name = "lite0"
    model = "efficientnet-lite0"
    layers = "all"                         # or a list of layer names
    dataset = "fashion-mnist"
    train_size = 2000
    test_size = 1000

    [[experiments]]
    name = "dr"
    experiments = ["dr1", "dr2"]
    grid = { dr_steps = "1-20", repeats = 3 }

``DIR/campaign.json`` lists the sweeps (name, folder, features file, model, layer, data
set, experiments, status ``pending`` or ``done``) and is rewritten atomically as each
sweep finishes; ``dnnstress report DIR`` reads it.  Everything is checked before any work
(unknown keys name their table and line, missing files, unknown experiments, models and
layers); rerunning the same campaign skips the finished sweeps and resumes a half-done
one.  With ``scheduler`` or ``workers`` the sweeps' units run on a Dask cluster
(:mod:`dnnstress.distributed`), one cluster for the whole campaign.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from dnnstress._files import write_json_atomically
from dnnstress.classify import SOLVERS
from dnnstress.sweep import Grid, Sweep, parse_int_list
from dnnstress.sweep.runner import AP_METHODS, NORMALIZE
from dnnstress.sweep.experiments import param_grids, resolve

CAMPAIGN_NAME = "campaign.json"
FEATURES_FOLDER = "features"
_TOP_KEYS = ("name", "features", "experiments")
_FILE_KEYS = ("name", "file", "model", "layer", "dataset")
_RECIPE_KEYS = ("name", "model", "layers", "dataset", "root", "train_size", "test_size",
                "seed", "policy", "batch_size")
_GRID_KEYS = tuple(field.name for field in dataclasses.fields(Grid))
_SWEEP_KEYS = ("normalize", "C", "ap_method", "solver", "batch")
_EXPERIMENTS_KEYS = ("name", "experiments", "grid", "params", *_SWEEP_KEYS)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclasses.dataclass(frozen=True)
class Features:
    """One features source: a file, or a recipe that extracts ``layers`` of ``model``."""

    name: str
    file: Path | None = None
    model: str | None = None
    layers: tuple[str, ...] = ()
    dataset: str | None = None
    layer: str | None = None  # a file's layer label (from its metadata or the TOML)
    extraction: dict = dataclasses.field(default_factory=dict)  # root, sizes, seed, ...


@dataclasses.dataclass(frozen=True)
class Experiments:
    """One experiment grid: names, Grid and params overrides, and sweep settings."""

    name: str
    experiments: tuple[str, ...]
    grid: Grid
    params: dict | None
    settings: dict  # normalize, C, ap_method, solver, batch (as run_sweep takes them)


@dataclasses.dataclass(frozen=True)
class SweepEntry:
    """One sweep of the campaign: a features file (or one layer of a recipe) x a grid."""

    name: str
    features: Features
    layer: str | None
    grid: Experiments

    def features_file(self, out_dir: Path) -> Path:
        if self.features.file is not None:
            return self.features.file
        return out_dir / FEATURES_FOLDER / f"{self.features.name}-{_safe(self.layer)}.npz"

    def record(self, out_dir: Path, status: str) -> dict:
        """This sweep's entry of campaign.json."""
        return {"name": self.name, "dir": self.name,
                "features_file": str(self.features_file(out_dir)),
                "model": self.features.model, "layer": self.layer,
                "dataset": self.features.dataset,
                "experiments": list(self.grid.experiments), "status": status}


class Campaign:
    """A checked campaign: its name and its sweeps, in order (features major).

    Build one with :meth:`load`; :meth:`run` computes it.
    """

    def __init__(self, name: str, sweeps: list[SweepEntry]):
        self.name, self.sweeps = name, sweeps

    @classmethod
    def load(cls, source, base_dir=None) -> Campaign:
        """Read and check a campaign: a TOML file path, or the same content as a dict
        (relative feature paths then resolve against ``base_dir``, default the current
        folder).  Every problem is a ValueError naming the key (and, for a file, the
        line), raised before any work."""
        if isinstance(source, dict):
            return _build(source, Path(base_dir or "."), "campaign", None, "campaign")
        path = Path(source)
        try:
            text = path.read_text()
        except OSError as error:
            raise FileNotFoundError(f"cannot read campaign file {path}: "
                                    f"{error.strerror or error}") from None
        tomllib = _tomllib()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from None
        return _build(data, path.parent, str(path), text, path.stem)

    def run(self, out_dir, *, device: str = "cpu", scheduler: str | None = None,
            workers: int | None = None, progress: bool = True) -> CampaignRun:
        """Run every sweep not yet done into ``out_dir``; return what was done."""
        return CampaignRun(self, out_dir, device, scheduler, workers, progress).run()


def run_campaign(source, out_dir, *, device: str = "cpu", scheduler: str | None = None,
                 workers: int | None = None, progress: bool = True,
                 base_dir=None) -> Path:
    """Run the campaign ``source`` (a TOML path or a dict) into ``out_dir``; return the
    path of ``campaign.json``.

    Parameters
    ----------
    source : path or dict
        The campaign file, or its content (feature paths relative to ``base_dir``).
    out_dir : path
        Folder of ``campaign.json``, one sub-folder per sweep and ``features/`` for
        extracted layers; rerunning into it resumes.
    device : {"cpu", "cuda"}
        Where extraction, stressors and solver run.
    scheduler, workers : optional
        A Dask scheduler address, or a number of local worker processes
        (:mod:`dnnstress.distributed`); at most one.
    progress : bool
        Progress bars on standard error (when it is a terminal).
    """
    campaign = Campaign.load(source, base_dir)
    return campaign.run(out_dir, device=device, scheduler=scheduler, workers=workers,
                        progress=progress).json_path


class CampaignRun:
    """One run of a campaign; after :meth:`run`, ``ran`` and ``skipped`` name the
    sweeps computed now and those already done, ``rows_written`` counts new rows."""

    def __init__(self, campaign, out_dir, device, scheduler, workers, progress):
        if scheduler is not None and workers is not None:
            raise ValueError("give a scheduler address or a number of workers, not both")
        self.campaign, self.out_dir = campaign, Path(out_dir)
        self.device, self.progress = device, progress
        self.executor = None
        if scheduler is not None or workers is not None:
            from dnnstress.distributed import DaskExecutor  # optional extra

            self.executor = DaskExecutor(scheduler, workers)
        self.json_path = self.out_dir / CAMPAIGN_NAME
        self.ran, self.skipped, self.rows_written = [], [], 0

    def run(self) -> CampaignRun:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ValueError(f"{self.out_dir} is a file; a campaign writes a folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        sweeps = self.campaign.sweeps
        self._status = {entry.name: "done" if self._finished(entry) else "pending"
                        for entry in sweeps}
        self._write()
        todo = [entry for entry in sweeps if self._status[entry.name] == "pending"]
        self.skipped = [entry.name for entry in sweeps if entry not in todo]
        with self.executor if self.executor is not None else contextlib.nullcontext():
            for source in dict.fromkeys(entry.features.name for entry in todo):
                entries = [entry for entry in todo if entry.features.name == source]
                files = self._features_files(entries[0].features, entries)
                for entry in entries:
                    self._sweep(entry, files[entry.layer])
        return self

    def _sweep(self, entry: SweepEntry, features_file: Path) -> None:
        grid = entry.grid
        sweep = Sweep(features_file, self.out_dir / entry.name,
                      experiments=grid.experiments, grid=grid.grid, params=grid.params,
                      device=self.device, progress=self.progress, executor=self.executor,
                      **grid.settings).run()
        self.rows_written += sweep.written
        self.ran.append(entry.name)
        self._status[entry.name] = "done"
        self._write()

    def _features_files(self, source: Features, entries) -> dict:
        """{layer: features file} of ``source``: the file itself, or the recipe's layers
        extracted (one forward pass, cached) into ``DIR/features/``."""
        if source.file is not None:
            return {source.layer: source.file}
        from dnnstress.extract import ExtractionOptions, default_policy, extract_layers
        from dnnstress.models import get_model

        layers = list(dict.fromkeys(entry.layer for entry in entries))
        extraction = dict(source.extraction)
        model = get_model(source.model)
        options = ExtractionOptions(
            batch_size=extraction.pop("batch_size", 32), device=self.device,
            policy=extraction.pop("policy", None) or default_policy(source.dataset, model),
            progress=self.progress)
        sets = extract_layers(model, layers, source.dataset, options=options, **extraction)
        files = {}
        for entry in entries:
            path = entry.features_file(self.out_dir)
            if not path.exists() or _metadata(path) != sets[entry.layer].metadata:
                sets[entry.layer].save(path)
            files[entry.layer] = path
        return files

    def _finished(self, entry: SweepEntry) -> bool:
        """Done in an earlier run of this campaign, with the same grid and settings."""
        try:
            previous = json.loads(self.json_path.read_text())
            record = next(s for s in previous["sweeps"] if s["name"] == entry.name)
            metadata = json.loads((self.out_dir / entry.name / "sweep.json").read_text())
        except (OSError, ValueError, KeyError, TypeError, StopIteration):
            return False
        last = (metadata.get("runs") or [{}])[-1]
        return (record == entry.record(self.out_dir, "done")
                and last.get("grid") == entry.grid.grid.as_dict()
                and last.get("experiments") == list(_resolved(entry.grid.experiments))
                and last.get("normalize") == entry.grid.settings.get("normalize", "after"))

    def _write(self) -> None:
        write_json_atomically(self.json_path, {
            "campaign": self.campaign.name,
            "sweeps": [entry.record(self.out_dir, self._status[entry.name])
                       for entry in self.campaign.sweeps]})


def _resolved(experiments) -> tuple[str, ...]:
    return tuple(e.name for e in resolve(experiments))


# --- checking the campaign's content ------------------------------------------------


class _Where:
    """Names a place in the campaign for error messages: table, key and, for a file,
    the line where the key is set (the first such line after the table's header)."""

    def __init__(self, origin: str, text: str | None):
        self.origin, self.lines = origin, (text or "").splitlines()

    def error(self, table: str, key: str | None, problem: str) -> ValueError:
        place = f"{table}" + (f", key {key!r}" if key else "")
        line = self._line(table, key)
        return ValueError(f"{self.origin}{f', line {line}' if line else ''}: {place}: {problem}")

    def _line(self, table: str, key: str | None) -> int | None:
        if not self.lines:
            return None
        header, _, index = table.partition(" #")
        start = 0
        if header != "campaign":
            pattern = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]")
            headers = [n for n, line in enumerate(self.lines) if pattern.match(line)]
            number = int(index.split()[0]) - 1 if index else 0
            if number >= len(headers):
                return None
            start = headers[number]
            if key is None:
                return start + 1
        if key is None:
            return None
        pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=|[{{,]\s*{re.escape(key)}\s*=")
        for n in range(start, len(self.lines)):
            if pattern.search(self.lines[n]):
                return n + 1
        return None


def _build(data: dict, base_dir: Path, origin: str, text: str | None,
           default_name: str) -> Campaign:
    where = _Where(origin, text)
    _check_keys(data, _TOP_KEYS, "campaign", where)
    name = _name(data.get("name", default_name), "campaign", "name", where)
    features = _tables(data, "features", where)
    grids = _tables(data, "experiments", where)
    sources = [_features(table, f"features #{n}", base_dir, where)
               for n, table in enumerate(features, 1)]
    experiments = [_experiments(table, f"experiments #{n}", where)
                   for n, table in enumerate(grids, 1)]
    for kind, items in (("features", sources), ("experiments", experiments)):
        names = [item.name for item in items]
        for n, item in enumerate(items, 1):
            if names.count(item.name) > 1:
                raise where.error(f"{kind} #{n}", "name",
                                   f"{item.name!r} is used twice; give each a name of its own")
    sweeps = [SweepEntry(f"{source.name}{'-' + _safe(layer) if source.file is None else ''}"
                         f".{grid.name}", source, layer, grid)
              for source in sources for layer in (source.layers or (source.layer,))
              for grid in experiments]
    return Campaign(name, sweeps)


def _tables(data, key, where) -> list[dict]:
    tables = data.get(key)
    if tables is None:
        raise where.error("campaign", None, f"no [[{key}]] table: a campaign needs at "
                                            f"least one")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict)
                                                             for t in tables):
        raise where.error("campaign", key, f"must be a list of tables ([[{key}]])")
    return tables


def _check_keys(table: dict, allowed, place: str, where) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(place, key, f"unknown key; valid keys: {', '.join(allowed)}")


def _name(value, place, key, where) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise where.error(place, key, f"{value!r} is not a usable name (letters, digits, "
                                      f"'_', '.' and '-'; it names a folder)")
    return value


def _features(table: dict, place: str, base_dir: Path, where) -> Features:
    if "file" in table:
        _check_keys(table, _FILE_KEYS, place, where)
        path = table["file"]
        if not isinstance(path, str):
            raise where.error(place, "file", "must be a path (a string)")
        file = (base_dir / Path(path).expanduser()).resolve()
        if not file.is_file():
            raise where.error(place, "file", f"no features file at {file}")
        metadata = _metadata(file, lambda problem: where.error(place, "file", problem))
        labels = {key: table.get(key, metadata.get(key)) for key in ("model", "layer",
                                                                      "dataset")}
        for key, value in labels.items():
            if value is not None and not isinstance(value, str):
                raise where.error(place, key, "must be a string")
        name = _name(table.get("name", file.stem), place, "name", where)
        return Features(name, file=file, **labels)
    if "model" not in table:
        raise where.error(place, None, "names neither a 'file' nor a 'model' to extract from")
    _check_keys(table, _RECIPE_KEYS, place, where)
    from dnnstress.datasets import dataset_info
    from dnnstress.models import get_model, resolve_layers

    try:
        model = get_model(table["model"])
    except ValueError as error:
        raise where.error(place, "model", str(error)) from None
    try:
        layers = tuple(layer.name for layer in resolve_layers(model, table.get("layers")))
    except (ValueError, TypeError) as error:
        raise where.error(place, "layers", str(error)) from None
    dataset = table.get("dataset", "fashion-mnist")
    try:
        dataset_info(dataset)
    except (ValueError, TypeError) as error:
        raise where.error(place, "dataset", str(error)) from None
    extraction = {}
    for key in ("train_size", "test_size", "seed", "batch_size"):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < (
                    0 if key == "seed" else 1):
                raise where.error(place, key, f"must be a positive integer, got {value!r}")
            extraction[key] = value
    for key in ("root", "policy"):
        if key in table:
            if not isinstance(table[key], str):
                raise where.error(place, key, "must be a string")
            extraction[key] = str((base_dir / table[key]).resolve()) if key == "root" else (
                table[key])
    name = _name(table.get("name", f"{model.name}-{dataset}"), place, "name", where)
    return Features(name, model=model.name, layers=layers, dataset=dataset,
                    extraction=extraction)


def _experiments(table: dict, place: str, where) -> Experiments:
    _check_keys(table, _EXPERIMENTS_KEYS, place, where)
    if "experiments" not in table:
        raise where.error(place, None, "no 'experiments' key (the experiment names to run)")
    names = table["experiments"]
    try:
        experiments = _resolved(names)
    except (ValueError, TypeError) as error:
        raise where.error(place, "experiments", str(error)) from None
    grid_table = table.get("grid", {})
    if not isinstance(grid_table, dict):
        raise where.error(place, "grid", "must be a table of Grid fields")
    _check_keys(grid_table, _GRID_KEYS, f"{place} grid", where)
    values = {}
    for key, value in grid_table.items():
        try:
            values[key] = _grid_value(key, value)
        except ValueError as error:
            raise where.error(place, key, str(error)) from None
    try:
        grid = Grid(**values)
    except (ValueError, TypeError) as error:
        raise where.error(place, "grid", str(error)) from None
    params = table.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise where.error(place, "params", "must be a table of experiment parameter grids")
        params = {name: {key: tuple(v) if isinstance(v, list) else v
                         for key, v in (grid_params or {}).items()}
                  if isinstance(grid_params, dict) else grid_params
                  for name, grid_params in params.items()}
        try:
            param_grids(resolve(experiments), grid, params)
        except (ValueError, TypeError) as error:
            raise where.error(place, "params", str(error)) from None
    settings = {key: table[key] for key in _SWEEP_KEYS if key in table}
    for key, valid in (("normalize", NORMALIZE), ("ap_method", AP_METHODS),
                       ("solver", SOLVERS)):
        if key in settings and settings[key] not in valid:
            raise where.error(place, key, f"{settings[key]!r} is not one of {', '.join(valid)}")
    C = settings.get("C", 1.0)
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
        raise where.error(place, "C", f"must be a positive number, got {C!r}")
    batch = settings.get("batch", "auto")
    if batch != "auto" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise where.error(place, "batch", f"must be a positive integer or 'auto', got {batch!r}")
    name = _name(table.get("name", "-".join(e for e in experiments if e != "baseline")
                           or "baseline"), place, "name", where)
    return Experiments(name, experiments, grid, params, settings)


def _grid_value(key: str, value):
    """A Grid field from TOML: an integer, a list of integers or a "2-8,16" string."""
    if key in ("repeats", "base_seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        return value
    if isinstance(value, str):
        return parse_int_list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return tuple(value)
    raise ValueError(f"must be integers (a list, or a string such as '2-8,16'), got {value!r}")


def _metadata(path: Path, error=ValueError) -> dict:
    """The metadata of the features file ``path``, read without loading its arrays;
    ``error(problem)`` makes the exception raised for a file that is none."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            members = archive.files
            text = str(archive["metadata"]) if "metadata" in members else "{}"
        metadata = json.loads(text)
    except (OSError, ValueError) as problem:
        raise error(f"{path} is not a readable features file ({problem})") from None
    if "train_x" not in members:
        raise error(f"{path} is not a features file (it holds no train_x)")
    return metadata if isinstance(metadata, dict) else {}


def _safe(name: str | None) -> str:
    """``name`` usable in a folder name (characters outside [A-Za-z0-9_.-] become _)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name or "features")


def _tomllib():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise RuntimeError("reading a campaign file on Python 3.10 needs tomli: "
                               "pip install tomli") from None
    return tomllib
