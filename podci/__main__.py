from podci.cli import main

main()
