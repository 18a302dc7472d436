from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

tracelet.start_logging("custom_tags", project="my_project", backend="mlflow")
writer = SummaryWriter()
step, lr, batch_size, model_name = 5, 0.001, 32, "resnet18"

# Scalars with custom metadata
writer.add_scalar('learning_rate', lr, step)
writer.add_scalar('batch_size', batch_size, step)

# Text logs for additional context
writer.add_text('Config', f"Model: {model_name}, LR: {lr}", step)
writer.add_text('Notes', 'Changed optimizer to AdamW', step)

writer.close()
tracelet.stop_logging()
