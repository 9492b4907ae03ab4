"""Dynamical propensity labels from iso-configurational NVE runs in LAMMPS.

For each configuration, ``n_iso`` NVE runs start from the same positions with fresh Maxwell-Boltzmann
velocities at temperature T (zero total momentum). The propensity of particle i at time t is the mean over
runs of its unwrapped displacement ``|r_i(t) - r_i(0)|``. Alongside, the self intermediate scattering
function of A particles, ``F_s(q, t) = <sin(q r)/(q r)>`` (isotropic form, averaged over A particles and runs),
is recorded on a log-spaced time grid; tau_alpha is where it first falls below 1/e.

Every run rebuilds the system from scratch in one reused LAMMPS instance and takes its velocity seed from
(seed, configuration name, run index), so a label depends only on those, never on worker count, order, or
interruptions. Outputs per configuration, both written atomically into the output folder:

- ``<name>.dump.gz``: the configuration with one column per time, named ``propensity_column(t)``;
- ``<name>.fs.json``: F_s and the mean squared displacement of A particles, tau_alpha, settings.

A configuration is complete when its dump exists (it is written last); reruns skip complete ones.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from glassmd.errors import GlassmdError, InputError
from glassmd.md import ka
from glassmd.md.system import build_system, derive_seed, gather_state

__all__ = [
    "PropensitySettings",
    "Configuration",
    "find_configurations",
    "run_seed",
    "record_steps",
    "label_frame",
    "label_configurations",
    "alpha_relaxation_time",
    "summarize_labels",
    "format_summary",
]

LABEL_SUFFIX = ".dump.gz"
CURVE_SUFFIX = ".fs.json"
_STAGING = ".partial"
_LOCK = ".glassmd-propensity.lock"


@dataclasses.dataclass(frozen=True)
class PropensitySettings:
    """What defines a set of labels; a rerun into the same folder must use the same values."""

    temperature: float
    times: tuple[float, ...] = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
    n_iso: int = 12
    seed: int = 1
    q: float = 7.25
    fs_points: int = 40  # log-spaced F_s times between one step and the longest label time
    fs_type: int = 1  # particle type of F_s (A)

    def validate(self) -> None:
        """Raise GlassmdError naming the first unusable setting."""
        if not self.temperature > 0:
            raise GlassmdError(f"--temperature must be positive, got {self.temperature}")
        if not self.times:
            raise GlassmdError("--times needs at least one time")
        if len(set(self.times)) != len(self.times):
            raise GlassmdError(f"--times has duplicates: {list(self.times)}")
        for t in self.times:
            if not t > 0:
                raise GlassmdError(f"--times must be positive, got {t:g}")
            steps = t / ka.TIMESTEP
            if abs(steps - round(steps)) > 1e-6:
                raise GlassmdError(f"time {t:g} in --times is not a multiple of the time step {ka.TIMESTEP:g}")
        if self.n_iso < 1:
            raise GlassmdError(f"--n-iso must be at least 1, got {self.n_iso}")
        if not 0 < self.seed < 2**31 - 1:
            raise GlassmdError(f"--seed must be between 1 and 2147483646, got {self.seed}")
        if not self.q > 0:
            raise GlassmdError(f"--q must be positive, got {self.q}")
        if self.fs_points < 2:
            raise GlassmdError(f"fs_points must be at least 2, got {self.fs_points}")

    def to_dict(self) -> dict:
        """JSON-ready form, also stored with every output so that reruns can check it."""
        d = dataclasses.asdict(self)
        d["times"] = [float(t) for t in self.times]
        d["timestep"] = ka.TIMESTEP
        return d


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One frame of one input dump, with the name its outputs and seeds use."""

    name: str
    source: Path
    frame_index: int


def run_seed(seed: int, name: str, run: int) -> int:
    """Velocity seed of iso-configurational run ``run`` of configuration ``name``."""
    return derive_seed("propensity", seed, name, run)


def record_steps(settings: PropensitySettings) -> tuple[np.ndarray, np.ndarray]:
    """Steps at which positions are recorded, and which of them are label times.

    Returns
    -------
    steps : (m,) int64, increasing: label times and the log-spaced F_s grid together
    label_index : (len(times),) int64, position of each label time (in the given order) in ``steps``
    """
    label_steps = np.array([int(round(t / ka.TIMESTEP)) for t in settings.times], dtype=np.int64)
    grid = np.geomspace(1, label_steps.max(), settings.fs_points)
    steps = np.unique(np.concatenate([np.rint(grid).astype(np.int64), label_steps]))
    return steps, np.searchsorted(steps, label_steps)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".dump", ".lammpstrj"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def find_configurations(inputs) -> list[tuple[Configuration, object]]:
    """Every frame of the input dumps (folders: their ``*.dump``/``*.dump.gz`` files), named.

    A single-frame file gives its configuration the file's stem as name; frames of a multi-frame
    file get ``<stem>_f<index>``. Returns (configuration, frame) pairs in input order.
    """
    from glassmd.data.dump import read_dump

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith((".dump", ".dump.gz")))
            if not found:
                raise InputError(f"{path} holds no .dump or .dump.gz files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"input {path} does not exist")
    result = []
    seen: dict[str, Path] = {}
    for path in files:
        frames = read_dump(path)
        if not frames:
            raise InputError(f"{path} holds no frames")
        for index, frame in enumerate(frames):
            name = _stem(path) if len(frames) == 1 else f"{_stem(path)}_f{index:04d}"
            if name in seen:
                raise InputError(f"configurations in {seen[name]} and {path} would both be named {name!r}")
            seen[name] = path
            if not np.array_equal(frame.ids, np.arange(1, len(frame.ids) + 1)):
                raise InputError(f"{path} frame {index}: atom ids must be 1..{len(frame.ids)} without gaps")
            bad = sorted(set(np.unique(frame.types).tolist()) - {1, 2})
            if bad:
                raise InputError(f"{path} frame {index}: atom types {bad}; a Kob-Andersen system has types 1 and 2")
            result.append((Configuration(name, path, index), frame))
    return result


def alpha_relaxation_time(times, fs) -> float | None:
    """First time where F_s falls below 1/e, interpolated linearly in log t; None if it never does."""
    times = np.asarray(times, dtype=np.float64)
    fs = np.asarray(fs, dtype=np.float64)
    target = math.exp(-1.0)
    below = np.nonzero(fs < target)[0]
    if below.size == 0:
        return None
    k = int(below[0])
    if k == 0:
        return float(times[0])
    f0, f1 = fs[k - 1], fs[k]
    l0, l1 = math.log(times[k - 1]), math.log(times[k])
    return float(math.exp(l0 + (target - f0) * (l1 - l0) / (f1 - f0)))


def label_frame(lmp, frame, name: str, settings: PropensitySettings) -> tuple[dict, dict]:
    """Run the iso-configurational ensemble of one configuration.

    Parameters
    ----------
    lmp : lammps.lammps
        A serial instance; it is cleared and rebuilt for every run.
    frame : glassmd.data.dump.Frame
    name : str
        Configuration name (enters the velocity seeds).
    settings : PropensitySettings

    Returns
    -------
    propensity : dict
        ``{time: (n,) float64}`` mean displacement per particle, in the frame's atom order.
    curve : dict
        ``times``, ``fs`` and ``msd`` of particles of type ``settings.fs_type`` on the record grid,
        and ``tau_alpha``.
    """
    steps, label_index = record_steps(settings)
    n = len(frame.ids)
    selected = frame.types == settings.fs_type
    n_selected = int(selected.sum())
    displacement_sum = np.zeros((len(settings.times), n))
    fs_sum = np.zeros(len(steps))
    msd_sum = np.zeros(len(steps))
    # velocity create (loop all) and gather_atoms work in ID order: IDs must be 1..n, as frames have them.
    if not np.array_equal(frame.ids, np.arange(1, n + 1)):
        raise InputError(f"configuration {name}: atom ids must be 1..{n} without gaps")
    label_of_slot = {int(slot): k for k, slot in enumerate(label_index)}
    for run in range(settings.n_iso):
        build_system(lmp, frame.box, frame.ids, frame.types, frame.positions)
        lmp.commands_list(
            [
                f"velocity all create {settings.temperature!r} {run_seed(settings.seed, name, run)} "
                "mom yes rot no dist gaussian",
                "fix glassmd_nve all nve",
            ]
        )
        ids, _, start = gather_state(lmp)
        if not np.array_equal(ids, frame.ids):
            raise RuntimeError(f"LAMMPS atom IDs differ from configuration {name}")
        done = 0
        for slot, step in enumerate(steps):
            # Segments continue the same trajectory: only the first run does the full setup.
            lmp.command(f"run {int(step) - done} {'pre yes' if done == 0 else 'pre no'} post no")
            done = int(step)
            _, _, now = gather_state(lmp)
            distance = np.linalg.norm(now - start, axis=1)
            k = label_of_slot.get(slot)
            if k is not None:
                displacement_sum[k] += distance
            if n_selected:
                r = distance[selected]
                fs_sum[slot] += np.sinc(settings.q * r / np.pi).mean()
                msd_sum[slot] += np.mean(r * r)
    times = np.array([_clean_time(t) for t in steps * ka.TIMESTEP])
    times[label_index] = settings.times  # exactly the requested values, not step * dt rounding
    fs = fs_sum / settings.n_iso
    propensity = {t: displacement_sum[k] / settings.n_iso for k, t in enumerate(settings.times)}
    curve = {
        "times": [float(t) for t in times],
        "fs": [float(v) for v in fs],
        "msd": [float(v) for v in msd_sum / settings.n_iso],
        "tau_alpha": alpha_relaxation_time(times, fs) if n_selected else None,
    }
    return propensity, curve


def _clean_time(t: float) -> float:
    """``step * dt`` without its binary rounding noise (0.7000000000000001 -> 0.7): 12 significant digits
    are far more than a step count times the time step carries, and the value then prints as it is named."""
    return float(f"{float(t):.12g}")


def _output_paths(out: Path, name: str) -> tuple[Path, Path]:
    return out / f"{name}{LABEL_SUFFIX}", out / f"{name}{CURVE_SUFFIX}"


def configuration_digest(frame) -> str:
    """SHA-256 of what labelling reads from a frame (ids, types, positions, box): two inputs of one name are the
    same configuration only if their digests agree."""
    digest = hashlib.sha256()
    for array in (frame.ids, frame.types, frame.positions, frame.box):
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _is_complete(out: Path, config: Configuration, frame, settings: PropensitySettings) -> bool:
    dump_path, curve_path = _output_paths(out, config.name)
    if not dump_path.exists():
        return False
    try:
        record = json.loads(curve_path.read_text())
        stored = record["settings"]
    except (OSError, ValueError, KeyError) as exc:
        raise GlassmdError(f"{dump_path} exists but {curve_path.name} is missing or unreadable ({exc})") from exc
    if stored != settings.to_dict():
        raise GlassmdError(
            f"{out} holds labels made with other settings ({curve_path.name}: {stored}); "
            f"now asked for {settings.to_dict()}; use another output folder"
        )
    # Two label sets both name their files config_<k>: a name already done is the same configuration only if
    # its atoms are. (Curves written before the digest existed carry none and are trusted by name.)
    digest = record.get("configuration_sha256")
    if digest is not None and digest != configuration_digest(frame):
        raise GlassmdError(
            f"{out} already holds a configuration named {config.name!r} labelled from {record.get('source')}, "
            f"and {config.source} frame {config.frame_index} is another configuration of that name; "
            "use another output folder"
        )
    return True


def _write_outputs(out: Path, config: Configuration, frame, propensity: dict, curve: dict, settings, wall: float):
    """Write the curve JSON, then the labelled dump, each via the staging folder and os.replace."""
    from glassmd.data.dump import Frame, parse_propensity_column, propensity_column, write_dump

    staging = out / _STAGING
    staging.mkdir(exist_ok=True)
    dump_path, curve_path = _output_paths(out, config.name)
    selected = frame.types == settings.fs_type
    payload = {
        "configuration": config.name,
        "source": str(config.source),
        "frame": config.frame_index,
        "configuration_sha256": configuration_digest(frame),
        "timestep": int(frame.timestep),
        "n_atoms": int(len(frame.ids)),
        "fs_type": settings.fs_type,
        "q": settings.q,
        **curve,
        "mean_propensity": {
            f"{t:g}": {
                "all": float(v.mean()),
                "A": float(v[selected].mean()) if selected.any() else None,
                "B": float(v[~selected].mean()) if (~selected).any() else None,
            }
            for t, v in propensity.items()
        },
        "settings": settings.to_dict(),
        "wall_seconds": round(wall, 2),
    }
    fd, tmp = tempfile.mkstemp(prefix=f"{config.name}.", suffix=".json.tmp", dir=staging)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=1)
        handle.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; this is an ordinary result file
    os.replace(tmp, curve_path)
    columns = {k: v for k, v in frame.columns.items() if parse_propensity_column(k) is None}
    columns.update({propensity_column(t): v for t, v in propensity.items()})
    labelled = Frame(
        timestep=frame.timestep,
        box=frame.box,
        ids=frame.ids,
        types=frame.types,
        positions=frame.positions,
        columns=columns,
    )
    staged = staging / f"{config.name}{LABEL_SUFFIX}"
    write_dump(staged, [labelled])
    os.replace(staged, dump_path)


def _label_one(lmp, config: Configuration, frame, out: Path, settings: PropensitySettings) -> float:
    started = time.perf_counter()
    propensity, curve = label_frame(lmp, frame, config.name, settings)
    wall = time.perf_counter() - started
    _write_outputs(out, config, frame, propensity, curve, settings, wall)
    return wall


# State of a multiprocessing worker: one LAMMPS instance reused for all its configurations.
_worker_lammps = None


def _worker_init() -> None:
    global _worker_lammps
    from glassmd.integrations.lammps_library import open_lammps

    _worker_lammps = open_lammps()


def _worker_label(task) -> tuple[str, float]:
    config, frame, out, settings = task
    return config.name, _label_one(_worker_lammps, config, frame, out, settings)


def _mpi_world():
    """COMM_WORLD when launched by mpiexec with more than one rank, else None."""
    from glassmd.integrations.lammps_library import ensure_libmpi

    ensure_libmpi()
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    world = MPI.COMM_WORLD
    return world if world.Get_size() > 1 else None


class _OutputLock:
    """Exclusive lock on the output folder so two labelling jobs never write the same files."""

    def __init__(self, out: Path):
        self.path = out / _LOCK
        self.handle = None

    def __enter__(self):
        self.handle = open(self.path, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise GlassmdError(f"another glassmd propensity job is writing to {self.path.parent}") from None
        return self

    def release(self, remove: bool) -> None:
        if self.handle is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        self.handle = None

    def __exit__(self, *exc):
        self.release(remove=exc[0] is None)


def _discard_partial_files(out: Path) -> None:
    """Drop half-written files left by a killed run (complete outputs never live in the staging folder).

    Called only while holding the output lock, so no running job can own them.
    """
    staging = out / _STAGING
    if staging.exists():
        shutil.rmtree(staging)


def _finish_output(out: Path) -> None:
    staging = out / _STAGING
    if staging.exists() and not any(staging.iterdir()):
        staging.rmdir()


def label_configurations(
    inputs, out_dir, settings: PropensitySettings, jobs: int = 1, progress: bool = True
) -> dict:
    """Label every configuration of ``inputs`` into ``out_dir``, skipping complete ones.

    Runs serially, over ``jobs`` spawned processes, or, under ``mpiexec -n K``, over K ranks (rank r
    takes every K-th pending configuration, each with its own serial LAMMPS).

    Returns
    -------
    dict
        ``total``, ``skipped`` and ``labelled`` counts, and ``seconds`` per configuration labelled here
        (on this rank).
    """
    settings.validate()
    if jobs < 1:
        raise GlassmdError(f"--jobs must be at least 1, got {jobs}")
    out = Path(out_dir)
    world = _mpi_world()
    rank = world.Get_rank() if world is not None else 0
    if world is not None and jobs != 1:
        raise GlassmdError("use either --jobs or mpiexec ranks, not both")

    lock = None
    error = None
    pending = configs = None
    if rank == 0:
        try:
            configs = find_configurations(inputs)
            out.mkdir(parents=True, exist_ok=True)
            lock = _OutputLock(out).__enter__()
            _discard_partial_files(out)
            pending = [(c, f) for c, f in configs if not _is_complete(out, c, f, settings)]
        except GlassmdError as exc:
            error = str(exc)
            if lock is not None:
                lock.release(remove=False)
    if world is not None:
        error = world.bcast(error, root=0)
        pending = world.bcast(pending, root=0)
        n_total = world.bcast(len(configs) if configs is not None else 0, root=0)
    else:
        n_total = len(configs) if configs is not None else 0
    if error is not None:
        raise GlassmdError(error)

    seconds: list[float] = []
    bar = _progress_bar(len(pending), progress and rank == 0)
    try:
        if world is not None:
            seconds = _run_mpi_share(world, pending, out, settings, bar)
        elif jobs > 1 and len(pending) > 1:
            seconds = _run_pool(pending, out, settings, jobs, bar)
        else:
            seconds = _run_serial(pending, out, settings, bar)
    except BaseException:
        if lock is not None:
            lock.release(remove=False)
        raise
    finally:
        if bar is not None:
            bar.close()
    if world is not None:
        world.Barrier()
    if rank == 0:
        _finish_output(out)
        lock.release(remove=True)
    return {"total": n_total, "skipped": n_total - len(pending), "labelled": len(pending), "seconds": seconds}


def _run_serial(pending, out, settings, bar) -> list[float]:
    from glassmd.integrations.lammps_library import open_lammps

    seconds = []
    if not pending:
        return seconds
    lmp = open_lammps()
    try:
        for config, frame in pending:
            seconds.append(_label_one(lmp, config, frame, out, settings))
            if bar is not None:
                bar.update(1)
    finally:
        lmp.close()
    return seconds


def _run_pool(pending, out, settings, jobs, bar) -> list[float]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    tasks = [(c, f, out, settings) for c, f in pending]
    seconds = []
    # SIGTERM (a batch scheduler's time limit, kill) ends this process at once by default, and the workers
    # would go on writing into a folder whose lock died with it. As an exception it leaves the `with` block,
    # whose exit terminates the pool.
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        with context.Pool(processes=min(jobs, len(tasks)), initializer=_worker_init) as pool:
            for _, wall in pool.imap_unordered(_worker_label, tasks, chunksize=1):
                seconds.append(wall)
                if bar is not None:
                    bar.update(1)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return seconds


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _run_mpi_share(world, pending, out, settings, bar) -> list[float]:
    from glassmd.integrations.lammps_library import open_lammps
    from mpi4py import MPI

    share = pending[world.Get_rank() :: world.Get_size()]
    seconds = []
    if share:
        lmp = open_lammps(comm=MPI.COMM_SELF)
        try:
            for config, frame in share:
                try:
                    seconds.append(_label_one(lmp, config, frame, out, settings))
                except Exception as exc:
                    # The other ranks would wait forever at the final barrier; completed outputs are safe.
                    print(f"glassmd propensity: rank {world.Get_rank()}: {config.name}: {exc}", file=sys.stderr)
                    world.Abort(1)
                if bar is not None:
                    # Rank 0 sees the other ranks' progress through the files they completed.
                    done = sum(_output_paths(out, c.name)[0].exists() for c, _ in pending)
                    bar.update(done - bar.n)
        finally:
            lmp.close()
    return seconds


def _progress_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="config", desc="propensity", dynamic_ncols=True)


def summarize_labels(label_dir) -> dict:
    """Mean F_s(q, t) and tau_alpha over the configurations labelled so far in ``label_dir``.

    Returns
    -------
    dict
        ``count``, ``times``, ``fs_mean``, ``fs_sem`` (standard error over configurations), ``msd_mean``,
        ``tau_alpha`` (of the mean curve), ``tau_alpha_configs`` (mean and standard deviation of the
        per-configuration values), ``mean_propensity`` ({time: {all, A, B}} averaged over configurations),
        ``wall_seconds`` (mean per configuration), ``settings``.
    """
    folder = Path(label_dir)
    if not folder.is_dir():
        raise GlassmdError(f"{folder} is not a folder")
    records = []
    for path in sorted(folder.glob(f"*{CURVE_SUFFIX}")):
        if not _output_paths(folder, path.name[: -len(CURVE_SUFFIX)])[0].exists():
            continue  # curve written but labels not yet: incomplete
        records.append(json.loads(path.read_text()))
    if not records:
        raise GlassmdError(f"{folder} holds no labelled configurations (*{CURVE_SUFFIX} with its dump)")
    # Curves written before the times were cleaned at the source carry step * dt noise: clean them here too.
    for record in records:
        record["times"] = [_clean_time(t) for t in record["times"]]
    times = records[0]["times"]
    if any(r["times"] != times for r in records):
        raise GlassmdError(f"{folder} mixes configurations labelled on different time grids")
    fs = np.array([r["fs"] for r in records])
    msd = np.array([r["msd"] for r in records])
    taus = np.array([r["tau_alpha"] for r in records if r["tau_alpha"] is not None], dtype=np.float64)
    fs_mean = fs.mean(axis=0)
    mean_propensity = {}
    for key in records[0]["mean_propensity"]:
        mean_propensity[key] = {
            part: float(np.mean([r["mean_propensity"][key][part] for r in records]))
            if records[0]["mean_propensity"][key][part] is not None
            else None
            for part in ("all", "A", "B")
        }
    return {
        "count": len(records),
        "times": times,
        "fs_mean": fs_mean.tolist(),
        "fs_sem": (fs.std(axis=0, ddof=1) / math.sqrt(len(records))).tolist() if len(records) > 1 else None,
        "msd_mean": msd.mean(axis=0).tolist(),
        "tau_alpha": alpha_relaxation_time(times, fs_mean),
        "tau_alpha_configs": {
            "mean": float(taus.mean()) if taus.size else None,
            "std": float(taus.std(ddof=1)) if taus.size > 1 else None,
            "count": int(taus.size),
        },
        "mean_propensity": mean_propensity,
        "wall_seconds": float(np.mean([r["wall_seconds"] for r in records])),
        "settings": records[0]["settings"],
    }


def plot_summary(summary: dict, path) -> Path:
    """PNG of the mean F_s(q, t) of A particles (log time) with its standard error, the 1/e line and tau_alpha."""
    from glassmd.plotting import figure, save_png

    times = np.asarray(summary["times"], dtype=np.float64)
    fs = np.asarray(summary["fs_mean"])
    keep = times > 0
    plt, fig, axes = figure(1, 1, (5.5, 4))
    ax = axes[0, 0]
    ax.semilogx(times[keep], fs[keep], color="C0", label=f"mean of {summary['count']} configurations")
    if summary.get("fs_sem") is not None:
        sem = np.asarray(summary["fs_sem"])[keep]
        ax.fill_between(times[keep], fs[keep] - 2 * sem, fs[keep] + 2 * sem, color="C0", alpha=0.3, lw=0)
    ax.axhline(math.exp(-1), color="0.5", ls=":", lw=1)
    tau = summary.get("tau_alpha")
    if tau is not None:
        ax.axvline(tau, color="C3", ls="--", lw=1, label=f"tau_alpha = {tau:.3g}")
    q = summary.get("settings", {}).get("q")
    ax.set_xlabel("t (LJ units)")
    ax.set_ylabel(f"F_s(q{' = ' + format(q, 'g') if q else ''}, t) of A particles")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False)
    fig.tight_layout()
    return save_png(plt, fig, path)


def format_summary(summary: dict) -> str:
    """Human-readable table of a ``summarize_labels`` result."""
    tau = summary["tau_alpha"]
    tc = summary["tau_alpha_configs"]
    lines = [
        f"configurations labelled: {summary['count']}",
        f"tau_alpha (mean F_s = 1/e, q = {summary['settings']['q']:g}): "
        + (f"{tau:.4g}" if tau is not None else "not reached"),
    ]
    if tc["mean"] is not None:
        spread = f" +- {tc['std']:.3g} (sd)" if tc["std"] is not None else ""
        lines.append(f"tau_alpha per configuration: {tc['mean']:.4g}{spread} over {tc['count']}")
    lines.append(f"wall time per configuration: {summary['wall_seconds']:.1f} s")
    lines.append("mean propensity:  t  all  A  B")
    for key, parts in summary["mean_propensity"].items():
        lines.append(
            f"  {key:>6}  " + "  ".join(f"{parts[p]:.5f}" if parts[p] is not None else "-" for p in ("all", "A", "B"))
        )
    lines.append("mean F_s and MSD of A particles:  t  F_s  (sem)  MSD")
    sem = summary["fs_sem"]
    for k, t in enumerate(summary["times"]):
        err = f"{sem[k]:.4f}" if sem is not None else "-"
        lines.append(f"  {t:8.3f}  {summary['fs_mean'][k]:.5f}  ({err})  {summary['msd_mean'][k]:.5f}")
    return "\n".join(lines)
