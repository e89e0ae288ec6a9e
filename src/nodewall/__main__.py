from nodewall.cli.main import main

main()
