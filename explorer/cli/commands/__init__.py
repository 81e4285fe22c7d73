"""Subcommands. Each module defines `register(subparsers)` and optionally `ORDER` (its place in --help)."""
