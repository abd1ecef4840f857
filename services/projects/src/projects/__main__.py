from projects.app import main

main()
