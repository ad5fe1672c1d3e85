from splatforge.cli import main

main()
