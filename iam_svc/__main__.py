from iam_svc.main import main

main()
