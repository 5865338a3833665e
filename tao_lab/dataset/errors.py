"""The one exception class of the data layer."""
from __future__ import annotations


class DataError(RuntimeError):
    """A dataset on disk is missing, unreadable or inconsistent.

    The message always names the offending path and, for count mismatches, both numbers, and says how to fix it.
    """
