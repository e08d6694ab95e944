from cfn.cli import main

main()
