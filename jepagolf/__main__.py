import sys

from jepagolf.cli import main

sys.exit(main())
