"""The one exception type that market-data code raises for bad input.

Command-line entry points catch :class:`DataError` and print its message as a single ``error: ...`` line,
so every message must be one readable sentence that names what was wrong and where.
"""


class DataError(ValueError):
    """Price data that cannot be used: missing file, wrong columns, bad values, unknown symbols."""
