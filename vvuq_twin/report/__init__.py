"""Reports of a VVUQ run: one self-contained HTML page plus JSON and NetCDF.

The report only reads results (it imports nothing from the other vvuq_twin modules). See
:class:`Report` for the API and :data:`SUMMARY_FIELDS` for the standard VVUQ summary table.
"""

from ._env import DEFAULT_PACKAGES, git_commit, software_versions
from ._html import GENERATED_ID, STATUS_ID, SUMMARY_ID
from .report import SUMMARY_FIELDS, Metric, Report, ReportError, figure_to_png

__all__ = [
    "Report",
    "Metric",
    "ReportError",
    "SUMMARY_FIELDS",
    "figure_to_png",
    "software_versions",
    "git_commit",
    "DEFAULT_PACKAGES",
    "STATUS_ID",
    "GENERATED_ID",
    "SUMMARY_ID",
]
