"""MC normalization: cross sections × luminosity (or livetime) → expected events and weights.

* :mod:`.tables`     versioned cross-section tables (``parameters/cross_sections``), in nb
* :mod:`.inventory`  the MC samples read from their files (N_gen, Σw, Σw², N_eff)
* :mod:`.normalize`  weights, expected events, MC/data luminosity ratio, streams
* :mod:`.pot`        livetime / POT mode (spill and cycle methods)
* :mod:`.compare`    data/MC control distribution, χ²/ndf and p-value

See ``docs/mc_normalization.md``.
"""

from __future__ import annotations

from .compare import CONTROL_VARIABLES, Hist, chi2_test, control_histograms, fill_histogram, merge_bins, plot_stack
from .inventory import DEFAULT_SCHEMA, Sample, inventory_frame, read_inventory, read_sample, read_samples_csv
from .normalize import WEIGHTS_COLUMNS, Normalization, normalize, prepare_lumi, write_csv_atomic
from .pot import BeamMode, PotConstants, expected_counts, load_pot_constants, pot_both, pot_cycle, pot_spill
from .tables import CrossSection, CrossSectionTable, load_cross_sections, parse_cross_sections, tables_frame

__all__ = [
    "CONTROL_VARIABLES", "Hist", "chi2_test", "control_histograms", "fill_histogram", "merge_bins", "plot_stack",
    "DEFAULT_SCHEMA", "Sample", "inventory_frame", "read_inventory", "read_sample", "read_samples_csv",
    "WEIGHTS_COLUMNS", "Normalization", "normalize", "prepare_lumi", "write_csv_atomic",
    "BeamMode", "PotConstants", "expected_counts", "load_pot_constants", "pot_both", "pot_cycle", "pot_spill",
    "CrossSection", "CrossSectionTable", "load_cross_sections", "parse_cross_sections", "tables_frame",
]
