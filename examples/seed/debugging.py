import logging

from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

logging.basicConfig(level=logging.DEBUG)

tracelet.start_logging("debug_experiment", backend="mlflow")
# ... your code ...
writer = SummaryWriter()
writer.add_scalar("loss", 0.5, 1)
writer.close()
tracelet.stop_logging()
