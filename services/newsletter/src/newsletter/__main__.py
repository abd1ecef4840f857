from newsletter.app import main

main()
