import sys

from api.cli.app import main

sys.exit(main())
