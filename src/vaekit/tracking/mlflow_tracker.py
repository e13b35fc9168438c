"""A run logged to MLflow through its client (`pip install mlflow-skinny`, or `mlflow`): no global
active run, so a notebook or a program that uses MLflow itself is left alone.

The tracking URI is the one `--track mlflow:URI` names, else MLflow's own default (the
MLFLOW_TRACKING_URI variable, or ./mlflow.db); the experiment is MLFLOW_EXPERIMENT_NAME's or
`vaekit`. Per-step figures are buffered and written once per epoch (a store write per step
would cost more than the step).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vaekit.errors import VaekitError

EXPERIMENT = "vaekit"
BATCH_METRICS = 1000  # MLflow's limit per log_batch call
BATCH_PARAMS = 100
PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
# the reachability check: one try, a short wait (MLflow's defaults retry for minutes)
CHECK_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class MlflowTracker:
    kind = "mlflow"

    def __init__(self, client: Any, run_id: str, uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.uri = uri
        self.pending: list[Any] = []

    @classmethod
    def open(cls, uri: str | None, run_name: str, state: dict[str, Any] | None) -> MlflowTracker:
        try:
            import mlflow
        except ImportError:
            raise VaekitError(
                "--track mlflow needs the mlflow package: pip install mlflow-skinny (or leave --track out)"
            ) from None
        uri = (state or {}).get("uri") or uri or mlflow.get_tracking_uri()
        saved = {name: os.environ.get(name) for name in CHECK_ENV}
        os.environ.update(CHECK_ENV)
        try:
            client = mlflow.MlflowClient(tracking_uri=uri)
            if state is not None:
                client.update_run(state["run_id"], status="RUNNING")  # the same tracked run, resumed
                return cls(client, state["run_id"], uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
            run = client.create_run(experiment_id, run_name=run_name, tags={"vaekit.run_folder": run_name})
            return cls(client, run.info.run_id, uri)
        except VaekitError:
            raise
        except Exception as error:  # MLflow raises many kinds: each means this store cannot be used
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise VaekitError(
                f"--track mlflow: the tracking store {uri} cannot be used ({first[:200]}): start the server or "
                "give a reachable URI, e.g. --track mlflow:sqlite:///mlflow.db"
            ) from None
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def state(self) -> dict[str, Any]:
        return {"uri": self.uri, "run_id": self.run_id}

    def log_settings(self, settings: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(key, str(value)[:PARAM_CHARS]) for key, value in settings.items()]
        for start in range(0, len(params), BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=params[start : start + BATCH_PARAMS])

    def log_figures(self, figures: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, float(value), now, step) for key, value in figures.items()]

    def log_pictures(self, pictures: dict[str, Path], step: int) -> None:
        for path in pictures.values():
            self.client.log_artifact(self.run_id, str(path), "pictures")

    def log_folder(self, folder: Path) -> None:
        self.client.log_artifacts(self.run_id, str(folder), "run")

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=pending[start : start + BATCH_METRICS])

    def end(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status)
