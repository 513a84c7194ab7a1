from splade_os.cli import main

main()
