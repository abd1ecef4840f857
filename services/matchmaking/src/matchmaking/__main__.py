from matchmaking.app import main

main()
