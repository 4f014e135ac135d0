"""``nnsrm status`` / ``status.py``: what is complete, missing or corrupt under a results root."""

from nnsrm.status import build_parser, main

__all__ = ["build_parser", "main"]
