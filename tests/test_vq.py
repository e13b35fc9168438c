"""The VQ-VAE's parts against independent computations: the EMA update against its closed form,
the straight-through gradient, dead codes restarted, the codebook loss's gradient, the prior
over codes normalised (an exhaustive sum), its sampler autoregressive; the bound's parts."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.conftest import blob_images
from vaekit.config import DataConfig, ModelConfig, RunConfig
from vaekit.data.transforms import to_model_input
from vaekit.errors import VaekitError
from vaekit.methods import choice
from vaekit.models import build_model
from vaekit.models.code_prior import CodePrior
from vaekit.objectives.base import StepBatch
from vaekit.objectives.registry import build_objective
from vaekit.posteriors.vq import Codebook, assignment_statistics, ema_step, nearest_codes, perplexity

VQ_MLP = ModelConfig(hidden_sizes=(32,), latent_dim=3)
VQ_CONV = ModelConfig(architecture="conv", conv_channels=(4, 8))
VQ_MLP_CODES = choice("posterior", "vq", codebook_size=8, code_dim=2)
VQ_CONV_CODES = choice("posterior", "vq", codebook_size=8, code_dim=3)


def test_nearest_codes_and_statistics_match_a_direct_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    vectors, codebook = torch.randn(50, 3, generator=generator), torch.randn(6, 3, generator=generator)
    codes = nearest_codes(vectors, codebook)
    direct = torch.cdist(vectors, codebook).argmin(-1)
    assert torch.equal(codes, direct)
    counts, sums = assignment_statistics(vectors, codes, 6)
    for k in range(6):
        assert counts[k] == (codes == k).sum()
        assert torch.allclose(sums[k], vectors[codes == k].sum(0), atol=1e-6)


def test_ema_update_equals_its_closed_form_on_a_toy_batch() -> None:
    """Two codes in 1-D, N = (1, 1) and m = e at the start; the same batch t times gives
    N_t = g^t + (1 - g^t) n and m_t = g^t e_0 + (1 - g^t) s, so e_t = m_t / N_t."""
    codebook = Codebook(2, 1, ema=True, decay=0.9)
    codebook.codebook.copy_(torch.tensor([[0.0], [10.0]]))
    codebook.embed_sum.copy_(codebook.codebook)
    batch = torch.tensor([[1.0], [2.0], [3.0], [9.0]])  # three vectors for code 0, one for code 1
    codes = nearest_codes(batch, codebook.codebook)
    counts, sums = assignment_statistics(batch, codes, 2)
    codebook.steps.fill_(5)  # past the first step, which starts the codes at encodings
    for t in range(1, 4):
        codebook.update(counts, sums, batch[:0])
        kept = 0.9**t
        size = kept * torch.ones(2) + (1 - kept) * torch.tensor([3.0, 1.0])
        total = kept * torch.tensor([0.0, 10.0]) + (1 - kept) * torch.tensor([6.0, 9.0])
        assert torch.allclose(codebook.cluster_size, size)
        assert torch.allclose(codebook.codebook[:, 0], total / size)
    again = ema_step(torch.ones(2), torch.tensor([[0.0], [10.0]]), counts, sums, 0.9)
    assert torch.allclose(
        again[2][:, 0],
        (0.9 * torch.tensor([0.0, 10.0]) + 0.1 * torch.tensor([6.0, 9.0])) / (0.9 + 0.1 * torch.tensor([3.0, 1.0])),
    )


def test_straight_through_passes_the_decoders_gradient_to_the_encoder_unchanged() -> None:
    codebook = Codebook(4, 2, ema=True, decay=0.99)
    z_e = torch.randn(5, 2, requires_grad=True)
    quantised = codebook.quantise(z_e)
    assert torch.allclose(quantised.straight_through, quantised.z_q, atol=1e-6)  # the codes' value ...
    weights = torch.randn(5, 2)
    (quantised.straight_through * weights).sum().backward()
    assert torch.equal(z_e.grad, weights)  # ... the identity's gradient


def test_the_codebook_loss_moves_the_codes_and_the_commitment_moves_the_encoder() -> None:
    torch.manual_seed(0)
    posterior = choice("posterior", "vq", codebook_size=8, code_dim=2, codebook_update="loss")
    model = build_model(VQ_MLP, (1, 8, 8), posterior=posterior)
    objective = build_objective(RunConfig(model=VQ_MLP, posterior=posterior), 100)
    x = batch(8)
    terms = objective(model.train(), StepBatch(x, None, 0, 1.0, slice(0, 8), 8, torch.Generator().manual_seed(0)))
    terms.loss.mean().backward()
    assert model.codebook.codebook.grad is not None and model.codebook.codebook.grad.abs().sum() > 0
    ema_model = build_model(VQ_MLP, (1, 8, 8), posterior=VQ_MLP_CODES)
    assert not ema_model.codebook.codebook.requires_grad  # moving averages move it, not gradients


def batch(n: int = 16, side: int = 8) -> torch.Tensor:
    return to_model_input(torch.from_numpy(blob_images(n, side=side)[0]), DataConfig())


def test_the_first_step_starts_every_code_at_an_encoding_and_a_faded_code_is_restarted() -> None:
    codebook = Codebook(4, 2, ema=True, decay=0.5)
    encodings = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0], [0.0, 9.0]])
    counts, sums = assignment_statistics(encodings, nearest_codes(encodings, codebook.codebook), 4)
    assert codebook.update(counts, sums, encodings) == 4
    assert torch.equal(codebook.codebook, encodings[:4])
    # Code 3 gets nothing from now on: its use fades under DEAD_FRACTION of the average, then it
    # is restarted at the next vector offered.
    used = encodings[:3]
    restarted_at = None
    for step in range(20):
        counts, sums = assignment_statistics(used, nearest_codes(used, codebook.codebook), 4)
        if codebook.update(counts, sums, encodings[4:]):
            restarted_at = step
            break
    assert restarted_at is not None
    assert torch.equal(codebook.codebook[3], encodings[4])
    assert codebook.cluster_size[3] == 1.0 and not codebook.dead()[3]


def test_the_prior_over_codes_sums_to_one_over_every_map() -> None:
    """All 3^4 maps of a 2 x 2 map with K = 3: the autoregressive factors make p a distribution."""
    torch.manual_seed(0)
    prior = CodePrior(3, (2, 2), channels=8, layers=3)
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.normal_(0.0, 1.0)  # far from uniform
        maps = torch.tensor(list(itertools.product(range(3), repeat=4))).view(-1, 2, 2)
        probabilities = prior.log_prob(maps).exp()
    assert probabilities.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert probabilities.max() > 3 * probabilities.min()  # not the uniform prior in disguise


def test_each_position_of_the_prior_sees_only_the_codes_before_it() -> None:
    torch.manual_seed(0)
    prior = CodePrior(4, (3, 3), channels=8, layers=3)
    codes = torch.randint(0, 4, (1, 3, 3))
    base = prior.logits(codes)
    for position in range(9):
        changed = codes.clone().view(-1)
        changed[position] = (changed[position] + 1) % 4
        moved = (prior.logits(changed.view(1, 3, 3)) - base).abs().sum(1).view(-1) > 0  # (9,)
        assert not moved[: position + 1].any()  # only later positions may change


def test_the_bound_is_reconstruction_plus_the_codes_rate() -> None:
    torch.manual_seed(0)
    model = build_model(VQ_CONV, (1, 8, 8), posterior=VQ_CONV_CODES).eval()
    x = batch()
    with torch.no_grad():
        terms = model.elbo(x)
        iwae = model.iwae(x, 7)
    assert model.layout.map_shape == (2, 2)
    assert torch.allclose(terms.kl_nats, torch.full((len(x),), 4 * math.log(8)))  # uniform: M log K
    assert torch.allclose(iwae.loss, terms.nelbo_nats)  # every weight is the same number
    with pytest.raises(VaekitError, match="vaekit train-prior"):
        model.sample(2)
    model.code_prior.trained_steps.fill_(1)  # as if trained: its own log p(codes) becomes the rate
    with torch.no_grad():
        codes = model.encode(x).codes
        assert torch.allclose(model.elbo(x).kl_nats, -model.code_prior.log_prob(codes))
        assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)


def test_codes_perplexity_counts_used_codes_effectively() -> None:
    assert perplexity(torch.tensor([5.0, 5.0, 0.0, 0.0])).item() == pytest.approx(2.0)
    assert perplexity(torch.tensor([1.0, 0.0])).item() == pytest.approx(1.0)


def test_a_training_pass_moves_the_codebook_only_through_its_after_step_hook() -> None:
    """The forward pass of a training step leaves the codebook as it was; the hook the trainer runs
    once the step is taken moves it, restarting as many codes as the step reported."""
    torch.manual_seed(0)
    model = build_model(VQ_MLP, (1, 8, 8), posterior=VQ_MLP_CODES)
    objective = build_objective(RunConfig(model=VQ_MLP, posterior=VQ_MLP_CODES), 100)
    codebook = model.codebook
    for step in range(3):  # the first update starts every code; later ones restart the dead
        before = {name: t.clone() for name, t in codebook.state_dict().items()}
        terms = objective(model.train(), StepBatch(batch(8), None, step, 1.0, slice(0, 8), 8, torch.Generator()))
        assert all(torch.equal(before[name], t) for name, t in codebook.state_dict().items())
        assert terms.after_step is not None
        assert terms.after_step() == int(terms.extras["codes_restarted"][0])
        assert not torch.equal(before["codebook"], codebook.codebook)
    with torch.no_grad():
        evaluated = objective(model.eval(), StepBatch(batch(8), None, 3, 1.0, slice(0, 8), 8, torch.Generator()))
    assert evaluated.after_step is None
