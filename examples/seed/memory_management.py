import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

tracelet.start_logging("memory_management", project="my_project", backend="mlflow")
writer = SummaryWriter()
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
large_image = torch.rand(1, 3, 512, 512)

for step in range(501):
    if step == 0:
        # Limit image resolution
        resized_image = F.interpolate(large_image, size=(224, 224))
        writer.add_image('Prediction', resized_image[0], step)

    # Log histograms selectively
    if step % 500 == 0:  # Reduce frequency for memory-intensive ops
        for name, param in model.named_parameters():
            if 'weight' in name:  # Only log weights, not biases
                writer.add_histogram(f'Weights/{name}', param, step)

writer.close()
tracelet.stop_logging()
