from netscope.cli import main

main()
