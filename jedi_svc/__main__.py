from jedi_svc.main import main

main()
