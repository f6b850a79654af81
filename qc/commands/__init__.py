"""One module per command or command group. Each imports heavy parts inside its functions, so
that `qc --help` and `qc predict` never pay for torch or ultralytics."""
