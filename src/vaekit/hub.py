"""Runs on the Hugging Face Hub: `vaekit push --run R --repo OWNER/NAME` and `hf://OWNER/NAME`
wherever a run is read (`vaekit.load_run`, every command's `--run`).

What is uploaded is what loading and reading a run need, in safe formats only (safetensors, JSON,
PNG, a Markdown model card): the kept weights (checkpoints/best.safetensors), config.json,
summary.json, eval.json, metrics.jsonl and the run's pictures. Never pickles, never the
training data (data.npz), the resumable snapshot or tracking.json, and never code unless the user
names it (`--code nets.py` for a network built by user code). Local paths in config.json are cut
to file names: they describe the uploader's machine, not the model.

Built on huggingface_hub (an optional extra, `pip install "vaekit[hub]"`): its cache, its login
(`hf auth login` or HF_TOKEN) and its offline mode (HF_HUB_OFFLINE=1: cached runs only).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vaekit.atomic import read_json
from vaekit.config import RunConfig, flat_settings
from vaekit.errors import VaekitError
from vaekit.models.custom import is_factory_name
from vaekit.viz.card import iwae_bound, last_pictures

HF_PREFIX = re.compile(r"^hf:/{1,2}")  # Path("hf://a/b") prints as hf:/a/b
REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
RUN_FILES = ("config.json", "summary.json", "eval.json", "metrics.jsonl", "checkpoints/best.safetensors")
CARD = "README.md"


def is_hub_name(text: str | Path) -> bool:
    return bool(HF_PREFIX.match(str(text)))


def parse_hub_name(text: str | Path) -> tuple[str, str | None]:
    """`hf://OWNER/NAME[@REVISION]` -> (OWNER/NAME, REVISION or None), or a one-line refusal."""
    name = HF_PREFIX.sub("", str(text))
    repo, _, revision = name.partition("@")
    if not REPO.match(repo) or "--" in repo or ".." in repo:
        raise VaekitError(
            f"{text} is not a Hub model name: write hf://OWNER/NAME (or hf://OWNER/NAME@REVISION), e.g. hf://me/vae-mnist"
        )
    return repo, revision or None


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise VaekitError(
            "runs on the Hugging Face Hub need the huggingface_hub package: pip install huggingface_hub"
        ) from None
    return huggingface_hub


def download(text: str | Path) -> Path:
    """The folder of a Hub run, downloaded into (or found in) huggingface_hub's cache."""
    repo, revision = parse_hub_name(text)
    hub = _hub()
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        folder = hub.snapshot_download(repo, revision=revision, library_name="vaekit")
    except LocalEntryNotFoundError:
        raise VaekitError(
            f"{text} is not in the local Hugging Face cache and the Hub cannot be reached (HF_HUB_OFFLINE is "
            "set, or no network): download it once while online, or give a run folder"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise VaekitError(f"{text}: the Hub has no such model or revision ({str(error).splitlines()[0]})") from None
    path = Path(folder)
    if not (path / "checkpoints" / "best.safetensors").is_file():
        raise VaekitError(f"{text} holds no vaekit run (no checkpoints/best.safetensors): push one with vaekit push")
    return path


# ------------------------------------------------------------------------------------------ push


def _published_config(config: dict[str, Any]) -> dict[str, Any]:
    """config.json as uploaded: paths on the uploader's machine cut to their file names."""
    data = dict(config.get("data", {}))
    for key in ("dataset", "data_dir"):
        value = data.get(key)
        if isinstance(value, str) and ("/" in value or "\\" in value):
            data[key] = Path(value).name
    train = dict(config.get("train", {}))
    if train.get("tensorboard"):
        train["tensorboard"] = Path(train["tensorboard"]).name
    return {**config, "data": data, "train": train}


def run_config(run_dir: Path) -> RunConfig:
    """The settings of config.json (which also describes the data: shapes, counts, source)."""
    written = read_json(run_dir / "config.json")
    return RunConfig.from_dict({key: value for key, value in written.items() if key in RunConfig().to_dict()})


def check_pushable(run_dir: Path, code: Path | None) -> RunConfig:
    """The run's config, or a refusal: a run still training, or one whose network is user code
    that the user has not named (code is never uploaded silently)."""
    if not (run_dir / "config.json").is_file() or not (run_dir / "checkpoints" / "best.safetensors").is_file():
        raise VaekitError(f"--run {run_dir} is not a vaekit run folder (no config.json or best checkpoint)")
    if not (run_dir / "summary.json").is_file():
        raise VaekitError(
            f"--run {run_dir} has not finished (no summary.json): push a finished run (vaekit train --resume "
            f"{run_dir} finishes it)"
        )
    config = run_config(run_dir)
    factory = config.model.architecture
    if is_factory_name(factory) and code is None:
        raise VaekitError(
            f"{run_dir}'s network is built by user code ({factory}): name the file to upload with --code "
            f"{factory.split(':')[0].replace('.', '/')}.py (it is never uploaded silently), or push another run"
        )
    if code is not None:
        if not is_factory_name(factory):
            raise VaekitError(f"--code {code}: {run_dir}'s network is vaekit's own ({factory}); leave --code out")
        if not code.is_file() or code.suffix != ".py":
            raise VaekitError(f"--code {code} is not a Python file: give the module that defines {factory}")
    return config


def stage(run_dir: Path, repo: str, license_id: str, code: Path | None = None) -> Path:
    """The folder huggingface_hub is given to upload: the run's files, its card, and named code."""
    config = check_pushable(run_dir, code)
    folder = Path(tempfile.mkdtemp(prefix="vaekit-push-"))
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(run_dir / name, folder / name)
    (folder / "config.json").write_text(json.dumps(_published_config(read_json(run_dir / "config.json")), indent=2))
    pictures = {**last_pictures(run_dir / "images"), **{p.stem: p for p in sorted((run_dir / "plots").glob("*.png"))}}
    for name, path in pictures.items():
        target = folder / "pictures" / f"{name}.png"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)
    if code is not None:
        shutil.copyfile(code, folder / code.name)
    (folder / CARD).write_text(model_card(run_dir, config, repo, license_id, sorted(pictures), code))
    return folder


def push(run_dir: Path, repo: str, license_id: str, code: Path | None = None, private: bool = False) -> str:
    """Upload a finished run to the Hub as OWNER/NAME; returns the commit's URL."""
    repo, revision = parse_hub_name(f"hf://{repo}")
    if revision is not None:
        raise VaekitError(f"--repo {repo}@{revision}: push to a repository's main branch (leave out @REVISION)")
    hub = _hub()
    folder = stage(run_dir, repo, license_id, code)
    try:
        api = hub.HfApi(library_name="vaekit")
        api.create_repo(repo, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo, folder_path=folder, commit_message=f"vaekit push of {run_dir.name}")
    except Exception as error:  # the Hub's errors are many kinds; each means nothing was pushed
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise VaekitError(f"push to {repo} failed ({first[:200]}): log in with `hf auth login` or HF_TOKEN") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return str(getattr(commit, "commit_url", commit))


# ------------------------------------------------------------------------------------------ card


def _figure_rows(run_dir: Path) -> list[tuple[str, str, str]]:
    """(figure, value with unit, how it was measured) from summary.json and eval.json."""
    summary = read_json(run_dir / "summary.json")
    unit = summary.get("units", "nats per item").split(";")[0]
    rows = [
        ("test -ELBO", f"{summary['test_nelbo_nats']:.2f} {unit}", "end of training (vaekit train)"),
        ("its reconstruction term", f"{summary['test_recon_nats']:.2f} {unit}", "end of training"),
        ("its KL term", f"{summary['test_kl_nats']:.2f} {unit}", "end of training"),
    ]
    if summary.get("test_bits_per_dim") is not None:
        rows.append(("test -ELBO in bits per dimension", f"{summary['test_bits_per_dim']:.4f}", "end of training"))
    if (run_dir / "eval.json").is_file():
        evaluation = read_json(run_dir / "eval.json")
        bound = iwae_bound(evaluation)
        if bound is not None:
            how = f"vaekit evaluate --k {evaluation.get('iwae_k')}"
            name = bound[0]
            rows.append((f"IWAE {name}", f"{bound[1]:.2f} {unit}", how))
            if "iwae_bits_per_dim" in evaluation:
                rows.append((f"IWAE {name} in bits per dimension", f"{evaluation['iwae_bits_per_dim']:.4f}", how))
    return rows


def _data_line(config: RunConfig, raw: dict[str, Any]) -> str:
    dataset = config.data.dataset
    counts = ", ".join(
        f"{raw[k]:,} {k.split('_')[0]}" for k in ("train_images", "val_images", "test_images") if k in raw
    )
    if "/" in dataset or "\\" in dataset or dataset.endswith((".npz", ".npy", ".csv", ".parquet")):
        return (
            f"the uploader's own data ({Path(dataset).name}; not uploaded), split {counts}. Its license and "
            "provenance are the uploader's to state."
        )
    return f"the built-in dataset `{dataset}` as vaekit reads it (`vaekit datasets`), split {counts}."


CARD_TEMPLATE = """---
library_name: vaekit
license: {license_id}
tags:
- vaekit
- variational-autoencoder
- pytorch
---

# {name}

A variational autoencoder trained with [vaekit](https://pypi.org/project/vaekit/): preset
`{preset}`, {architecture} network, latent size {latent_dim},
{likelihood} likelihood, objective `{objective}`, posterior
`{posterior}`, prior `{prior}`.
{code_note}
## Use

```python
import vaekit

run = vaekit.load_run("hf://{repo}"{trust})   # downloaded once, then from the cache
samples = run.model.sample(16)
```

or from the command line: `vaekit sample --run hf://{repo} -n 64 --out samples.png`.

## Figures

{description}. Kept: epoch {best_epoch} ({kept}).

| figure | value | how |
| --- | --- | --- |
{figures}

Measure again with `vaekit evaluate --run hf://{repo}` (add `--k 5000` for a tighter IWAE estimate).

## Data

Trained on {data}

## Pictures

Written by training at its last epoch (reconstructions over originals, samples from the prior),
and any `vaekit plot` pictures of the run.

{shown}

## Settings

Every setting of the run (`config.json` holds them as vaekit reads them; local paths are cut to
file names).

| setting | value |
| --- | --- |
{settings}

## License

{license_id} (as the uploader gave it with `vaekit push --license`).

## Files

`checkpoints/best.safetensors` (the weights: safetensors, no pickle), `config.json`,
`summary.json`, `metrics.jsonl` (the training curves, one line per epoch){extra_files}, `pictures/`.
"""


def model_card(
    run_dir: Path, config: RunConfig, repo: str, license_id: str, pictures: list[str], code: Path | None
) -> str:
    raw = read_json(run_dir / "config.json")
    flat = {key: value for key, value in flat_settings(config).items() if "." in key}  # sections only
    published = _published_config(raw)
    for key in ("data.dataset", "data.data_dir", "train.tensorboard"):
        section, name = key.split(".")
        flat[key] = published[section].get(name)
    summary = read_json(run_dir / "summary.json")
    model = config.model
    figures = "\n".join(f"| {name} | {value} | {how} |" for name, value, how in _figure_rows(run_dir))
    cells = {key: json.dumps(value).replace("|", "\\|") for key, value in flat.items()}  # a | would end the cell
    settings = "\n".join(f"| `{key}` | `{cell}` |" for key, cell in cells.items())
    shown = "\n".join(f"![{name}](pictures/{name}.png)" for name in pictures)
    code_note = (
        f"\nIts network is built by user code, uploaded as `{code.name}` ({config.model.architecture}): "
        f"loading it runs that code, so `load_run` asks for `trust_code=True`. Read it first.\n"
        if code is not None
        else ""
    )
    trust = ", trust_code=True" if code is not None else ""
    extra = ["eval.json"] * (run_dir / "eval.json").is_file() + ([code.name] if code is not None else [])
    extra_files = "".join(f", `{name}`" for name in extra)
    return CARD_TEMPLATE.format(
        name=repo.split("/")[1],
        repo=repo,
        license_id=license_id,
        preset=config.preset,
        architecture=model.architecture,
        latent_dim=model.latent_dim,
        likelihood=config.likelihood.name,
        objective=config.objective.name,
        posterior=config.posterior.name,
        prior=config.prior.name,
        code_note=code_note,
        trust=trust,
        description=summary.get("figure_description", ""),
        best_epoch=summary.get("best_epoch"),
        kept=summary.get("kept", ""),
        figures=figures,
        data=_data_line(config, raw),
        shown=shown,
        settings=settings,
        extra_files=extra_files,
    )
