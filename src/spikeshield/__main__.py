"""``python -m spikeshield ...`` (what ``torchrun -m spikeshield train --config F`` runs): the command line."""

import sys

from spikeshield.cli import main

sys.exit(main())
