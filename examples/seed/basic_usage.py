import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

model = torch.nn.Module()
model.layer1 = torch.nn.Linear(4, 4)
pred_image = torch.rand(3, 16, 16)

# Start Tracelet
tracelet.start_logging(
    exp_name="tensorboard_experiment",
    project="my_project",
    backend="mlflow"
)

# Use TensorBoard exactly as before
writer = SummaryWriter(log_dir='./runs/experiment_1')

# All these operations are automatically captured
for step in range(100):
    loss_value, acc_value = 1.0 / (step + 1), step / 100
    # Scalars
    writer.add_scalar('Loss/Train', loss_value, step)
    writer.add_scalar('Accuracy/Train', acc_value, step)

    # Histograms
    writer.add_histogram('Weights/Layer1', model.layer1.weight, step)

    # Images (every 10 steps)
    if step % 10 == 0:
        writer.add_image('Predictions', pred_image, step)

writer.close()
tracelet.stop_logging()
