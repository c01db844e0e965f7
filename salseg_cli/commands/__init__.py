"""One module per subcommand; each registers itself on ``salseg_cli.app.app`` (or ``bench_app``)."""
