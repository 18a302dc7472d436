# The seed shows this with backend="wandb"; the W&B exporter is not part of this release yet, so MLflow.
import numpy as np
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

tracelet.start_logging(
    exp_name="custom_tensorboard",
    backend="mlflow",
    config={
        "track_tensorboard": True,       # Enable TensorBoard capture (default: True)
        "tensorboard_log_dir": "./runs", # TensorBoard log directory
        "capture_images": True,          # Capture add_image() calls
        "capture_histograms": True,      # Capture add_histogram() calls
        "capture_audio": False,          # Skip audio (can be large)
        "max_image_size": "1MB",         # Limit image sizes
    }
)
writer = SummaryWriter("./runs")
writer.add_scalar("loss", 0.25, 1)
writer.add_audio("skipped", np.zeros(800), 1, sample_rate=8000)
writer.add_image("kept", np.zeros((3, 8, 8)), 1)
writer.close()
tracelet.stop_logging()
