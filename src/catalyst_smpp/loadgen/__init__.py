"""A load generator for SMPP servers (``catalyst-smpp load``)."""

from catalyst_smpp.loadgen.config import BindMode, LoadConfig, TextEncoding
from catalyst_smpp.loadgen.report import LoadReport
from catalyst_smpp.loadgen.runner import run_load

__all__ = ["BindMode", "LoadConfig", "LoadReport", "TextEncoding", "run_load"]
