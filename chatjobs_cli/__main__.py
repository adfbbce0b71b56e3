import sys

from chatjobs_cli.app import main

sys.exit(main())
