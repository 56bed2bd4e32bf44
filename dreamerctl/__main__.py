from dreamerctl.cli.app import main

main()
