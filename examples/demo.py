"""A small PyTorch training loop logged with plain TensorBoard calls, delivered to a local MLflow store.

    ./scripts/demo          # or: .venv/bin/python examples/demo.py

Runs in a few seconds on a CPU, then prints where to look.
"""

from __future__ import annotations

import os

import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel


def main() -> None:
    tracelet_otel.start_logging(exp_name="demo", project="tracelet-otel-demo", backend="mlflow",
                                config={"tensorboard_log_dir": "runs/demo"})

    torch.manual_seed(0)
    inputs = torch.randn(512, 20)
    labels = (inputs[:, :5].sum(dim=1) > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)

    train_writer = SummaryWriter("runs/demo/train")
    val_writer = SummaryWriter("runs/demo/validation")
    train_writer.add_text("Config", "Model: 2-layer MLP, LR: 0.01, optimizer: AdamW", 0)
    for step in range(200):
        batch = torch.randint(0, 400, (64,))
        logits = model(inputs[batch])
        loss = torch.nn.functional.cross_entropy(logits, labels[batch])
        regularization = 1e-4 * sum(p.pow(2).sum() for p in model.parameters())
        optimizer.zero_grad()
        (loss + regularization).backward()
        optimizer.step()

        train_writer.add_scalar("Loss/Train/CrossEntropy", loss.item(), step)
        train_writer.add_scalar("Loss/Train/Regularization", regularization.item(), step)
        train_writer.add_scalar("Metrics/Accuracy/Train", (logits.argmax(1) == labels[batch]).float().mean(), step)
        if step % 20 == 0:
            with torch.no_grad():
                val_logits = model(inputs[400:])
                val_writer.add_scalar("loss", torch.nn.functional.cross_entropy(val_logits, labels[400:]), step)
                val_writer.add_scalar("Metrics/Accuracy/Validation",
                                      (val_logits.argmax(1) == labels[400:]).float().mean(), step)
            train_writer.add_histogram("Weights/Layer1", model[0].weight, step)
            train_writer.add_image("Weights/Layer1/Image", model[0].weight.detach().unsqueeze(0), step,
                                   dataformats="CHW")
    train_writer.add_text("Notes", "Changed optimizer to AdamW", 200)
    train_writer.close()
    val_writer.close()
    stopped = tracelet_otel.stop_logging()

    mlflow = stopped.backends["mlflow"]
    delivered = stopped.delivery["mlflow"].delivered
    store = mlflow.reference["tracking_uri"]
    print(f"\nDelivered {delivered} records to MLflow run {mlflow.run_id} (experiment 'tracelet-otel-demo').")
    print(f"TensorBoard event files: {os.path.abspath('runs/demo')}")
    print(f"Look at it with:  .venv/bin/mlflow ui --backend-store-uri {store}")


if __name__ == "__main__":
    main()
