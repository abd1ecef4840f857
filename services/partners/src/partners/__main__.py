from partners.app import main

main()
