from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

tracelet.start_logging("multiple_writers", project="my_project", backend="mlflow",
                       config={"tensorboard_log_dir": "runs"})
step, train_loss, val_loss = 1, 0.5, 0.7

# Multiple writers for different aspects
train_writer = SummaryWriter('runs/train')
val_writer = SummaryWriter('runs/validation')

# Both are automatically captured
train_writer.add_scalar('loss', train_loss, step)
val_writer.add_scalar('loss', val_loss, step)

train_writer.close()
val_writer.close()
tracelet.stop_logging()
