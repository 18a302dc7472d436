"""``python -m tracelet_otel.delivery SPOOL``: the delivery worker (see :mod:`tracelet_otel.delivery.worker`)."""

import sys

from tracelet_otel.delivery.worker import main

sys.exit(main())
