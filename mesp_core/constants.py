"""Numbers shared by every part of MESP (trace layout, forecast defaults)."""

MINUTES_PER_DAY = 1440
DEFAULT_HORIZON = 60
MIN_CONTEXT = 60
