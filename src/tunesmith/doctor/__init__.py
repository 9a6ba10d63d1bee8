"""`tunesmith doctor`: the course's checklist for a fine-tune that does not work, run before training. `doctor(cfg)`
returns a Report; `to_text` / `to_html` render it (the CLI prints one, the Web UI can show the other)."""

from tunesmith.doctor.diagnose import doctor
from tunesmith.doctor.render import to_fragment, to_html, to_text
from tunesmith.doctor.report import Finding, Report

__all__ = ["Finding", "Report", "doctor", "to_fragment", "to_html", "to_text"]
