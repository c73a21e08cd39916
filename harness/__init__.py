"""harness: measure what the techniques that make LLM training cheaper really buy."""

__version__ = "0.1.0"
SCHEMA_VERSION = 1  # of stored trials and exports; bump on any incompatible change
