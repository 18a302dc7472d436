"""``python -m tracelet_otel.delivery SPOOL``: the delivery worker (see :mod:`tracelet_otel.delivery.worker`)."""

from tracelet_otel._child import exit_helper
from tracelet_otel.delivery.worker import main

exit_helper(main())
