"""An Optuna study that outlives its sweep, and Optuna's own figures drawn from it.

``hparams_search=optuna`` gives the Hydra Optuna sweeper a :class:`StudyFile` storage: the study (every trial's
parameters, distributions, values and states) is saved to ``<sweep dir>/optuna_study.pkl``, next to
``optimization_results.yaml``, after every change, so :func:`load_study` reloads it after the sweep and
:func:`write_figures` draws Optuna's own matplotlib figures from it (``optuna.visualization.matplotlib``:
optimisation history, parameter importances, slice plot); ``python -m tao_lab.compare`` calls it.

Why not ``storage: sqlite:///...``: the Optuna the sweeper plugin needs (2.10) cannot create an SQLite study with
the SQLAlchemy 2 in our environment, and has no journal storage yet. The file holds Optuna's own in-memory storage,
pickled (atomically replaced, so a killed sweep leaves the last complete state); an existing file is resumed.
"""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, Optional

from optuna.storages import InMemoryStorage

log = logging.getLogger(__name__)

STUDY_FILE = "optuna_study.pkl"
FIGURES = ("optuna_history.png", "optuna_importances.png", "optuna_slice.png")


def _saving_after(name: str):
    def method(self, *args, **kwargs):
        out = getattr(InMemoryStorage, name)(self, *args, **kwargs)
        self.save()
        return out
    method.__name__ = name
    return method


class StudyFile(InMemoryStorage):
    """Optuna's in-memory storage that saves itself to ``path`` after every write and resumes from it.

    Hydra builds it from the sweeper config (configs/hparams_search/optuna.yaml):
    ``storage: {_target_: tao_lab.optuna_study.StudyFile, path: ${hydra.sweep.dir}/optuna_study.pkl}``.
    """

    def __init__(self, path: os.PathLike):
        super().__init__()
        self.path = Path(path)
        if self.path.is_file():  # the same sweep dir and study name continue the study
            self._restore(self.path)
            log.info("optuna study resumed from %s", self.path)

    def _restore(self, path: Path) -> None:
        with open(path, "rb") as f:
            state = pickle.load(f)
        state.pop("path", None)
        InMemoryStorage.__setstate__(self, state)

    def save(self) -> None:
        state = dict(self.__getstate__())  # without the lock (Optuna's own pickling)
        state.pop("path", None)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(state, f)
        os.replace(tmp, self.path)

    # every write of Optuna's storage interface, then save
    create_new_study = _saving_after("create_new_study")
    delete_study = _saving_after("delete_study")
    set_study_directions = _saving_after("set_study_directions")
    set_study_user_attr = _saving_after("set_study_user_attr")
    set_study_system_attr = _saving_after("set_study_system_attr")
    create_new_trial = _saving_after("create_new_trial")
    set_trial_state = _saving_after("set_trial_state")
    set_trial_param = _saving_after("set_trial_param")
    set_trial_values = _saving_after("set_trial_values")
    set_trial_intermediate_value = _saving_after("set_trial_intermediate_value")
    set_trial_user_attr = _saving_after("set_trial_user_attr")
    set_trial_system_attr = _saving_after("set_trial_system_attr")


def load_study(sweep_dir: os.PathLike) -> Optional[Any]:
    """The Optuna study saved in ``<sweep_dir>/optuna_study.pkl`` (None when there is none)."""
    path = Path(sweep_dir) / STUDY_FILE
    if not path.is_file():
        return None
    import optuna

    storage = StudyFile(path)
    names = [s.study_name for s in storage.get_all_study_summaries()]
    if not names:
        return None
    return optuna.load_study(study_name=names[-1], storage=storage)


def _matplotlib_compat() -> None:
    """Optuna 2.10's matplotlib figures call ``matplotlib.cm.get_cmap``, removed in matplotlib 3.9: give it the
    registry's lookup (same colormaps)."""
    import matplotlib
    import matplotlib.cm as cm

    if not hasattr(cm, "get_cmap"):
        def get_cmap(name=None, lut=None):
            cmap = matplotlib.colormaps[name or matplotlib.rcParams["image.cmap"]]
            return cmap.resampled(lut) if lut is not None else cmap
        cm.get_cmap = get_cmap


def write_figures(sweep_dir: os.PathLike, out_dir: Optional[os.PathLike] = None) -> list[Path]:
    """Optuna's optimisation history, parameter importances and slice plot of the study saved in ``sweep_dir``,
    as PNGs in ``out_dir`` (default: the sweep dir, next to optimization_results.yaml). Returns the files written;
    a figure Optuna cannot draw (e.g. importances with fewer than two finished trials) is skipped with a log line."""
    study = load_study(sweep_dir)
    if study is None:
        return []
    import warnings

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna
    from optuna.visualization import matplotlib as ovm

    _matplotlib_compat()
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    out.mkdir(parents=True, exist_ok=True)
    # fANOVA (the default importance evaluator) breaks on the installed scikit-learn's tree layout; the
    # mean-decrease-impurity evaluator is Optuna's other built-in one
    evaluator = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    draw = {"optuna_history.png": lambda: ovm.plot_optimization_history(study),
            "optuna_importances.png": lambda: ovm.plot_param_importances(study, evaluator=evaluator),
            "optuna_slice.png": lambda: ovm.plot_slice(study)}
    written = []
    with warnings.catch_warnings(), plt.style.context("default"):
        warnings.simplefilter("ignore")  # Optuna marks these figures "experimental"
        for name, make in draw.items():
            try:
                axes = make()
            except Exception as exc:  # noqa: BLE001 - one figure Optuna cannot draw must not stop the others
                log.warning("optuna figure %s not drawn: %s", name, exc)
                continue
            fig = np.ravel(axes)[0].figure
            fig.savefig(out / name, dpi=100, bbox_inches="tight")
            plt.close(fig)
            written.append(out / name)
    return written
