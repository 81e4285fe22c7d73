"""The `pasid-explorer` command line: one module per subcommand under `commands/`."""
