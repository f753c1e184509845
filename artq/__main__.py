from artq.cli import main

main()
