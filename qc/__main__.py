from qc.cli import main

main()
