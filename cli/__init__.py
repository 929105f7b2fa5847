"""The `squall` command line."""
