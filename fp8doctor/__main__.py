import sys

from fp8doctor.cli import main

sys.exit(main())
