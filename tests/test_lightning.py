"""PyTorch Lightning's TensorBoardLogger writes through torch's SummaryWriter: its metrics and hyperparameters
reach MLflow, exactly as its event files hold them."""

from __future__ import annotations

from collections import Counter

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import TensorBoardLogger

import tracelet_otel
from tests.support import event_files, scalars_in


class TinyRegression(pl.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        inputs, targets = batch
        loss = torch.nn.functional.mse_loss(self.layer(inputs), targets)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def test_a_lightning_run_arrives_with_its_metrics_and_hparams(mlflow_store, tmp_path):
    run = tracelet_otel.start_logging("lightning", "tracelet-tests")
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    trainer = pl.Trainer(max_epochs=2, logger=TensorBoardLogger(str(tmp_path / "tb"), name="tiny"),
                         log_every_n_steps=1, accelerator="cpu", enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TinyRegression(), torch.utils.data.DataLoader(data, batch_size=8))
    tracelet_otel.stop_logging()

    run_id = run.backends["mlflow"].run_id
    in_event_files = Counter((tag, step, value) for path in event_files(str(tmp_path / "tb"))
                             for tag, step, value, _ in scalars_in(path))
    assert sorted(step for tag, step, _ in in_event_files if tag == "train/loss") == list(range(16))  # 2 x 8 batches
    delivered = Counter((key, step, value) for (key, step, value, _), count
                        in mlflow_store.metric_points(run_id).items() for _ in range(count))
    assert delivered == in_event_files
    assert mlflow_store.run(run_id).data.params == {"lr": "0.1", "hidden": "4"}
