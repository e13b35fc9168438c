"""A finished run loaded back for use: encoding, decoding, sampling, evaluating, serving.

Imports nothing from training/, so everything that only reads runs (metrics, pictures, the web
app) stays free of the trainer and of torch.distributed's process groups.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.atomic import read_json
from vaekit.checkpoint import load_checkpoint
from vaekit.codes import Codes, codes_of
from vaekit.config import ArrayLayout, RunConfig
from vaekit.data import DatasetSplits, load_dataset
from vaekit.data.columns import TableSchema
from vaekit.data.memory import OWN_DATA_FILE
from vaekit.data.registry import load_items
from vaekit.data.tables import default_columns, schema_of, table_from_frame
from vaekit.data.transforms import to_model_input, to_unit_range, to_user_units
from vaekit.devices import resolve_device
from vaekit.errors import VaekitError
from vaekit.models import VAE


@dataclass
class TrainedRun:
    """A finished run loaded back: the model plus what is needed to feed it data."""

    path: Path
    model: VAE
    config: RunConfig
    info: dict[str, Any]
    _splits: DatasetSplits | None = field(default=None, init=False, repr=False, compare=False)

    def __repr__(self) -> str:
        from vaekit.viz.card import run_line

        return f"TrainedRun({run_line(self)})"

    def _repr_html_(self) -> str:
        """A notebook shows a run as a card: what it is, its figures with units, its pictures."""
        from vaekit.viz.card import run_card

        return run_card(self)

    def plot(self, name: str, seed: int = 0) -> Any:
        """The picture `vaekit plot` calls `name`, returned (a PIL image or a matplotlib Figure)."""
        from vaekit.pictures import picture

        return picture(self, name, seed)

    def splits(self) -> DatasetSplits:
        """The run's data, read once per loaded run (the pictures of a notebook share it)."""
        if self._splits is None:
            self._splits = self.load_data()
        return self._splits

    def prepare(self, items: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Data as the user holds it -> model inputs on the model's device: images (N, C, H, W) or
        (N, H, W), uint8 or float in [0, 1] (floats are stored as 8-bit levels, as training saw them);
        a table's rows (N, D) in its own units, or as a DataFrame of its columns."""
        if self.is_table and hasattr(items, "columns") and hasattr(items, "dtypes"):  # a DataFrame
            items = table_from_frame(items, "the rows", self.config.data.label_column, self.schema).features
        batch = torch.as_tensor(items).to(self.model.device)
        expected = self.model.image_shape
        if self.is_table:
            batch = batch.float().reshape(len(batch), 1, 1, -1)  # (N, D) -> (N, 1, 1, D)
        else:
            if batch.is_floating_point():
                batch = (batch * 255.0).round_().clamp_(0, 255).to(torch.uint8)
            if batch.dim() == 3:
                batch = batch[:, None]  # (N, H, W) -> (N, 1, H, W)
        if tuple(batch.shape[1:]) != expected:
            raise VaekitError(
                f"this run takes items of shape {expected} ((1, 1, D) is a table row of D features), "
                f"got {tuple(batch.shape[1:])}"
            )
        return to_model_input(batch, self.config.data, generator)

    def to_display(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit_range(x, self.config.data)

    @property
    def run_dir(self) -> Path:
        """The run folder, also when a checkpoint file (RUN/checkpoints/x.safetensors) was loaded."""
        return self.path if self.path.is_dir() else self.path.parent.parent

    @property
    def summary(self) -> dict[str, Any]:
        """The run's summary.json: its test-set figures after training (empty before it ends)."""
        file = self.run_dir / "summary.json"
        return read_json(file, ": evaluate the run again with vaekit evaluate") if file.is_file() else {}

    @property
    def is_table(self) -> bool:
        """Trained on vectors (a table) rather than images."""
        return self.config.data.is_table

    @property
    def feature_names(self) -> tuple[str, ...]:
        """A table's column names (x0, x1, ... for a run without them)."""
        names = self.config.data.feature_names
        return names if names is not None else default_columns(self.model.image_shape[-1])

    def to_rows(self, x: torch.Tensor) -> np.ndarray:
        """Model-scale items (B, 1, 1, W) of a table -> encoded rows (B, W) in the user's units."""
        return to_user_units(x, self.config.data).flatten(1).cpu().numpy()

    @property
    def schema(self) -> TableSchema:
        """A table run's columns by kind (every column a number for a run from before kinds)."""
        schema = schema_of(self.config.data)
        if schema is None:
            raise VaekitError(f"{self.path} was trained on images: it has no table columns")
        return schema

    def to_frame(self, x: torch.Tensor) -> Any:
        """Model-scale items (B, 1, 1, W) of a table -> a pandas DataFrame, each column in its type."""
        import pandas as pd

        return pd.DataFrame(self.schema.decode(self.to_rows(x)))

    def sample_rows(self, n: int, seed: int = 0, draw: bool = True, where: dict[str, Any] | None = None) -> Any:
        """n synthetic rows as a DataFrame, drawn from p(x|z) (`draw`) or at E[x|z]; `where`
        {column: value} keeps the draws that meet every condition (rejection sampling)."""
        import pandas as pd

        from vaekit.rows import parse_conditions, sample_rows

        conditions = parse_conditions([f"{k}={v}" for k, v in (where or {}).items()], self.schema)
        return pd.DataFrame(sample_rows(self, n, seed, draw, conditions)[0])

    def impute(self, frame: Any, draws: int = 0, k: int = 100, seed: int = 0) -> Any:
        """A DataFrame with its empty cells filled by MIWAE's importance-weighted conditional mean
        (numbers) and mode (categories), observed cells unchanged; `draws` M > 0 returns a list of M
        multiple imputations instead (rows/py)."""
        from vaekit.rows import impute_frame

        filled = impute_frame(self, frame, draws, k, seed)
        return filled if draws else filled[0]

    def encode(
        self, items: np.ndarray | torch.Tensor, batch_size: int = 1000, labels: np.ndarray | None = None
    ) -> Codes:
        """Posterior codes of data as the user holds it (see `prepare`): `.mean` (N, Z) is what to
        use downstream, `.std` how sure the encoder is; z1's too for a two-layer model. A
        conditional run needs the items' labels (class indices, N)."""
        generator = torch.Generator(self.model.device).manual_seed(0)
        given = self.model.conditioning(None if labels is None else np.asarray(labels), "encode's items")
        batches = (
            (
                self.prepare(items[start : start + batch_size], generator),
                None if given is None else torch.as_tensor(given[start : start + batch_size]).to(self.model.device),
            )
            for start in range(0, len(items), batch_size)
        )
        return codes_of(self.model, batches)

    @property
    def class_names(self) -> tuple[str, ...]:
        """A conditional run's class names ("0", "1", ... when its data named none)."""
        model = self.config.model
        return model.class_names or tuple(str(k) for k in range(model.classes))

    def label_index(self, label: str | int) -> int:
        """A class given by its index or its name -> its index, for a conditional run."""
        if not self.model.classes:
            raise VaekitError(
                f"run {self.run_dir} is not conditional: only a run trained with --conditional draws a chosen --label"
            )
        names = self.class_names
        text = str(label).strip()
        if text in names:
            return names.index(text)
        if text.isdigit() and int(text) < len(names):
            return int(text)
        raise VaekitError(
            f"--label {label!r} is not a class of this run: use 0 to {len(names) - 1} or a name ({', '.join(names)})"
        )

    def items_of(
        self, dataset: str | None, progress: bool = False, array_layout: ArrayLayout = "auto"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Stored items and labels to encode or score: the run's own test split by default, else
        every item of `dataset`, in order, read with the run's data settings (a .npy/.npz file's
        images in `array_layout`, not the run's own file's)."""
        if dataset is None:
            test = self.load_data(progress).test
            return test.array, test.labels
        data = dataclasses.replace(self.config.data, dataset=dataset, array_layout=array_layout)
        items, _ = load_items(data, progress)
        if items.shape != self.model.image_shape:
            raise VaekitError(
                f"--dataset {dataset} holds items of shape {items.shape}, this run takes {self.model.image_shape}: "
                "give data like the run's own"
            )
        return items.array, items.labels

    def load_data(self, progress: bool = False) -> DatasetSplits:
        return load_dataset(with_data_in_run(self.config, self.run_dir).data, progress=progress)


def with_data_in_run(config: RunConfig, run_dir: Path) -> RunConfig:
    """A run trained on data from Python keeps it as RUN/data.npz, and its config names that file
    by absolute path; when the run folder has moved since, the copy inside it is the one to read."""
    named = Path(config.data.dataset)
    inside = run_dir / OWN_DATA_FILE
    if named.name == OWN_DATA_FILE and not named.exists() and inside.is_file():
        return dataclasses.replace(config, data=dataclasses.replace(config.data, dataset=str(inside.absolute())))
    return config


def load_run(path: str | Path, checkpoint: str = "best", device: str = "cpu", trust_code: bool = False) -> TrainedRun:
    """Load a run folder (or a .safetensors checkpoint file) for encoding, decoding and sampling.

    A run whose network a user's factory builds (--architecture module:function) is loaded only
    with `trust_code=True`: building it imports that module, which runs its code.

    `hf://OWNER/NAME[@REVISION]` loads a run pushed to the Hugging Face Hub (`vaekit push`),
    downloaded once into huggingface_hub's cache; with `trust_code=True` the module it ships is
    importable.
    """
    from vaekit.hub import download, is_hub_name

    if is_hub_name(path):
        path = download(path)
        if trust_code and str(path) not in sys.path:
            sys.path.insert(0, str(path))  # the pushed run's own module (vaekit push --code)
    path = Path(path)
    if path.is_dir():
        file = path / "checkpoints" / f"{checkpoint}.safetensors"
        if not file.is_file():
            raise VaekitError(
                f"{path} holds no {checkpoint} checkpoint: is it a vaekit run folder that finished an epoch?"
            )
    elif path.is_file():
        file = path
    else:
        raise VaekitError(f"run {path} does not exist: give a run folder written by `vaekit train`")
    model, config, info = load_checkpoint(file, resolve_device(device), trust_code=trust_code)
    model.eval()
    return TrainedRun(path, model, config, info)
