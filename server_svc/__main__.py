from server_svc.main import main

main()
