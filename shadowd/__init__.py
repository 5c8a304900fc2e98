"""shadowd: on-vehicle shadow-mode runtime.

A candidate driving model runs silently beside the human driver; where the two disagree the
window around that moment is cut out as a clip, spooled durably and uploaded. See
docs/ARCHITECTURE.md for where each concern lives.
"""

__version__ = "0.1.0"
