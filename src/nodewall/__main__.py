from nodewall.entry import main

main()
