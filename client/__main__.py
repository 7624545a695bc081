"""`python -m client`: see `client.cli`."""

import os
import sys

from client.cli import main

try:
    status = main()
    sys.stdout.flush()
except BrokenPipeError:
    # The reader went away (`| head`): stop quietly, as the Python docs recommend,
    # and keep the interpreter's final flush from raising again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    status = 1
sys.exit(status)
