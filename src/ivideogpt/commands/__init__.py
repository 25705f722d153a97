"""One module per CLI command: ``HELP``-free ``add_arguments(parser)`` and ``run(args) -> int``."""
