from torch.utils.tensorboard import SummaryWriter

import tracelet_otel as tracelet

tracelet.start_logging("hierarchical", project="my_project", backend="mlflow")
writer = SummaryWriter()
step = 3
ce_loss, reg_loss, val_loss, train_acc, val_acc, f1_macro = 0.9, 0.01, 1.1, 0.6, 0.55, 0.5

# Creates nested structure in backends
writer.add_scalar('Loss/Train/CrossEntropy', ce_loss, step)
writer.add_scalar('Loss/Train/Regularization', reg_loss, step)
writer.add_scalar('Loss/Validation/Total', val_loss, step)

writer.add_scalar('Metrics/Accuracy/Train', train_acc, step)
writer.add_scalar('Metrics/Accuracy/Validation', val_acc, step)
writer.add_scalar('Metrics/F1/Macro', f1_macro, step)

writer.close()
tracelet.stop_logging()
