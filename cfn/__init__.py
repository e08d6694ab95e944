"""cfn: coordinate many AI coding agents through Redis."""

__version__ = "0.1.0"
