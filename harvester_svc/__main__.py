from harvester_svc.main import main

main()
