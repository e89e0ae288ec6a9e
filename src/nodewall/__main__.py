from nodewall.cli import main

main()
