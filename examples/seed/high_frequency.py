import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

tracelet.start_logging("high_frequency", project="my_project", backend="mlflow")
writer = SummaryWriter()
model = torch.nn.Linear(4, 2)
model.gradients = torch.randn(10)
sample_images = torch.rand(4, 3, 8, 8)

for step in range(1001):
    loss = 1.0 / (step + 1)
    # Good: Batch similar metrics
    if step % 10 == 0:  # Log every 10 steps
        writer.add_scalar('Loss/Train', loss, step)

    if step % 100 == 0:  # Log expensive operations less frequently
        writer.add_histogram('Gradients', model.gradients, step)

    if step % 1000 == 0:  # Log very expensive operations rarely
        writer.add_images('Samples', sample_images, step)

writer.close()
tracelet.stop_logging()
