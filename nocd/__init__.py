"""nocd: a NOC monitoring and paging daemon for VoIP operations."""

__version__ = "0.1.0"
