"""refengine: an in-memory reference engine for the trace server feedback endpoints.

>>> from refengine import Engine, ManualClock, InvalidRequest
"""

from .clock import Clock, ManualClock, SystemClock
from .engine import Engine
from .errors import DumpFormatError, InvalidRequest
from .rows import FeedbackRow

__all__ = [
    "Clock",
    "DumpFormatError",
    "Engine",
    "FeedbackRow",
    "InvalidRequest",
    "ManualClock",
    "SystemClock",
]

__version__ = "0.1.0"
