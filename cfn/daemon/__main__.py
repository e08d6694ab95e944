from cfn.daemon.service import main

main()
