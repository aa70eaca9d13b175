"""The toy experiment: demo data with known truth (``dpnb simulate``).

``make_dataset(out_dir, scale="tiny", seed=1, truth_table=None, overwrite=False)`` writes a
whole dataset (layout in docs/architecture.md, schema in :mod:`dpnb.detector`);
``SCALES`` maps scale names to their :class:`SimConfig`:

* ``tiny``  8 x 64 = 512 channels, 4 modules, runs 1-6 physics + 7 cosmic, ~0.5 pb^-1,
  ~5k events, ~2e5 hits (~380 per channel): the tests' scale (~2 s).
* ``demo``  56 x 256 = 14,336 channels, 16 modules, runs 1-40 physics (4S, continuum
  8-9 and 27-29, scan 17 and 35; run 13 dq ``bad``) + 41-43 cosmic, 6 fills, ~7.4 pb^-1,
  ~70k events, ~1.8e7 hits, ~190 MB; E_cm steps at run 21.
* ``large`` 120 physics runs, ~59 pb^-1, ~1.5e8 hits (benchmarks only).

Modules: ``config`` (scales, cross sections, prescales), ``truth`` (injected constants,
T0 table), ``lumi`` (fills, runs, Massi files), ``events`` (physics), ``kernels`` (hits,
numba + numpy twin), ``writer`` (ROOT), ``mc`` (MC samples; nominal constants),
``dataset`` (atomic assembly). Calibration code must never read ``truth.json``.
"""

from __future__ import annotations

from .config import SCALES, SimConfig


def __getattr__(name):
    # the generator pulls in numba, uproot and pandas: load it only when it is used
    if name == "make_dataset":
        from .dataset import make_dataset

        return make_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["make_dataset", "SCALES", "SimConfig"]
