"""A training job that sends OTLP and nothing else: the collector route's demo (``docker compose up``).

Its environment chooses everything: ``TRACELET_BACKEND=otlp``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the collector)
and ``TRACELET_ARTIFACT_STORE`` (a bucket the bridge behind the collector reads payloads from). It holds no
tracker credentials; the bridge delivers its run to MLflow (``docs/collector.md``).
"""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel


def main() -> None:
    run = tracelet_otel.start_logging(exp_name="otlp-demo", project="tracelet-otel-demo")
    torch.manual_seed(0)
    inputs = torch.randn(512, 20)
    labels = (inputs[:, :5].sum(dim=1) > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    with SummaryWriter("runs/otlp-demo") as writer:
        for step in range(200):
            batch = torch.randint(0, 512, (64,))
            logits = model(inputs[batch])
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            writer.add_scalar("Loss/Train/CrossEntropy", loss.item(), step)
            if step % 20 == 0:
                writer.add_histogram("Weights/Layer1", model[0].weight, step)
                writer.add_image("Weights/Layer1/Image", model[0].weight.detach().unsqueeze(0), step, dataformats="CHW")
    stopped = tracelet_otel.stop_logging()
    if stopped is not None:
        sent = stopped.delivery["otlp"]
        print(f"Run {run.run_id}: {sent.delivered} records sent over OTLP, {sent.undelivered} still waiting in "
              f"{sent.spool}")


if __name__ == "__main__":
    main()
