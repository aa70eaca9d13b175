"""Skim validation: skim definitions, the selection language, statistics and comparisons.

* :mod:`.columns`      columns a selection can name (branches + derived, per event / per object)
* :mod:`.expr`         the selection language: parser with positioned errors, vectorised evaluation
* :mod:`.definitions`  ``parameters/skims/*.yaml`` and the registry of Python selections
* :mod:`.builtin`      registered Python selections (``tau_pair``)
* :mod:`.run`          one sample: retention, CPU time, ROOT output and size, multiplicity, histograms
* :mod:`.reference`    reference release: load, compare quantities and histograms (χ² / KS)
* :mod:`.validate`     a bucket's validation: samples, verdicts per skim, recording through ctx
* :mod:`.plots`        report figures

See ``docs/skims.md``.
"""

from __future__ import annotations

from .columns import ColumnSet, detector_columns
from .definitions import Skim, load_skims, register_selection, registered_selections, skim_from_mapping
from .expr import SkimExpressionError, compile_expression
from .reference import SKIM_REFERENCE_SCHEMA, load_reference
from .run import EmptySampleError, compile_histograms, file_columns, run_sample
from .validate import SampleInput, Validation, prepare, record_validation, run_validation

__all__ = [
    "ColumnSet", "detector_columns",
    "Skim", "load_skims", "register_selection", "registered_selections", "skim_from_mapping",
    "SkimExpressionError", "compile_expression",
    "SKIM_REFERENCE_SCHEMA", "load_reference",
    "EmptySampleError", "compile_histograms", "file_columns", "run_sample",
    "SampleInput", "Validation", "prepare", "record_validation", "run_validation",
]
