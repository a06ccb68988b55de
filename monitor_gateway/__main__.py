from monitor_gateway.main import main

main()
