from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet  # Add this import

tracelet.start_logging("my_experiment", backend="mlflow")  # Add this line
writer = SummaryWriter()
# ... same training loop, no changes needed ...
for step in range(10):
    writer.add_scalar("loss", 1.0 / (step + 1), step)
writer.close()
tracelet.stop_logging()  # Add this line
