"""python -m bench: the same as ``lstm-engine bench``."""
import sys

from .run import main

sys.exit(main())
