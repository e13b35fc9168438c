"""The pixel-context head (issue 6): its masks make pixel i depend only on pixels before i, so
the likelihood stays a normalised distribution; its windowed generation equals the plain
pixel-by-pixel loop; it starts as the plain decoder; a model with it trains and evaluates."""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.conftest import iwae_and_elbo, train_briefly
from vaekit.config import ModelConfig
from vaekit.errors import VaekitError
from vaekit.likelihoods.bernoulli import BernoulliLikelihood
from vaekit.models import build_model
from vaekit.models.pixelcontext import CONTEXT_FEATURES, PixelContextHead
from vaekit.models.vae import VAE
from vaekit.presets import resolve


def random_head(channels: int, params: int, layers: int, seed: int = 0) -> PixelContextHead:
    torch.manual_seed(seed)
    head = PixelContextHead(channels, params, width=6, layers=layers, act="tanh").double()
    torch.nn.init.normal_(head.out.weight)  # a fresh head outputs zeros; make it do something
    torch.nn.init.normal_(head.out.bias)
    return head


@pytest.mark.parametrize("layers", [1, 3])
def test_each_pixel_depends_only_on_the_pixels_before_it(layers: int) -> None:
    channels, height, width = 2, 7, 6
    head = random_head(channels, params=channels, layers=layers)
    decoded = torch.randn(1, channels + CONTEXT_FEATURES, height, width, dtype=torch.float64)
    x = torch.rand(1, channels, height, width, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda image: head(image, decoded), x)
    # (1, P, H, W, 1, C, H, W) -> (H, W, H', W'): does x[H', W'] move output[H, W]?
    influence = jacobian.abs().sum(dim=(0, 1, 4, 5))
    pixels = list(itertools.product(range(height), range(width)))
    for out_index, (i, j) in enumerate(pixels):
        for in_index, (k, m) in enumerate(pixels):
            if in_index >= out_index:  # the pixel itself and every later one: no influence at all
                assert influence[i, j, k, m] == 0.0, ((i, j), (k, m))
    # ...but a real context: the left neighbour and the pixel above both matter.
    assert influence[3, 3, 3, 2] > 0 and influence[3, 3, 2, 3] > 0
    reach = head.reach
    assert influence[reach + 1, 2, 1, 2] > 0 and influence[reach + 1, 2, 0, 2] == 0  # the receptive field's top
    bottom = height - 1  # ...and its right edge, reached going up one row per layer
    assert influence[bottom, 0, bottom - layers, reach] > 0 and influence[bottom, 0, :, reach + 1 :].sum() == 0


def test_the_likelihood_is_normalised_over_every_binary_image() -> None:
    # An autoregressive Bernoulli sums to one over all 2^(C H W) binary images only if no pixel
    # sees itself or a later pixel: an independent check of the masks.
    channels, height, width = 1, 3, 3
    config = ModelConfig(
        architecture="mlp", hidden_sizes=(8,), latent_dim=2, pixel_context_layers=2, pixel_context_channels=5
    )
    model = build_model(config, (channels, height, width))
    torch.nn.init.normal_(model.pixel_context.out.weight)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=height * width)))
    images = images.view(-1, channels, height, width)  # (512, 1, 3, 3)
    decoded = model.decode(torch.randn(1, 2)).expand(len(images), -1, -1, -1)
    total = model.log_likelihood(images, decoded).double().exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)
    # and the head changes the distribution: the mean-field likelihood of the same parameters differs
    plain = BernoulliLikelihood().log_prob(images, decoded[:, :1])
    assert not torch.allclose(plain, model.log_likelihood(images, decoded))


def test_drawn_images_follow_the_model_s_own_distribution() -> None:
    """Ancestral draws through the head, pixel by pixel: their frequencies over the 512 binary 3x3
    images match the exact probabilities the likelihood gives them."""
    config = ModelConfig(
        architecture="mlp", hidden_sizes=(8,), latent_dim=2, pixel_context_layers=2, pixel_context_channels=5
    )
    torch.manual_seed(1)
    model = build_model(config, (1, 3, 3))
    torch.nn.init.normal_(model.pixel_context.out.weight)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9))).view(-1, 1, 3, 3)  # (512, 1, 3, 3)
    with torch.no_grad():
        decoded = model.decode(torch.randn(1, 2))
        exact = model.log_likelihood(images, decoded.expand(512, -1, -1, -1)).double().exp()
        draws = model.draw_image(decoded.expand(40_000, -1, -1, -1), torch.Generator().manual_seed(0))
    index = (draws.view(-1, 9) * 2 ** torch.arange(8, -1, -1)).sum(1).long()  # each draw's row in `images`
    frequency = torch.bincount(index, minlength=512).double() / len(draws)
    assert 0.5 * (frequency - exact).abs().sum().item() < 0.03  # total variation: sampling noise only


def test_windowed_generation_equals_the_whole_image_loop() -> None:
    head = random_head(channels=1, params=1, layers=3)
    height, width = 9, 14  # wider than the window (2 * reach + 1 = 9 columns), so windows are cut on both sides
    decoded = torch.randn(4, 1 + CONTEXT_FEATURES, height, width, dtype=torch.float64)
    windowed = head.generate(decoded, torch.sigmoid)
    naive = torch.zeros(4, 1, height, width, dtype=torch.float64)
    with torch.no_grad():
        for i, j in itertools.product(range(height), range(width)):
            naive[:, :, i, j] = torch.sigmoid(head(naive, decoded))[:, :, i, j]
    assert torch.allclose(windowed, naive, atol=1e-12)
    # each pixel is the conditional mean given the ones before it, so the picture is a fixed point
    assert torch.allclose(torch.sigmoid(head(windowed, decoded)), windowed, atol=1e-12)


def test_k_decodings_of_one_image_match_the_image_repeated() -> None:
    """Importance sampling decodes each image K times; the head sees the image once and must give
    what it gives for the image repeated beside each decoding (sample-major order)."""
    head = random_head(channels=1, params=1, layers=2)
    k, batch = 3, 4
    x = (torch.rand(batch, 1, 7, 7) > 0.5).double()
    decoded = torch.randn(k * batch, 1 + CONTEXT_FEATURES, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        shared = head(x, decoded)
        repeated = head(x.repeat(k, 1, 1, 1), decoded)
    assert torch.allclose(shared, repeated, atol=1e-12)
    # and a wrong pairing (images in the other order) gives something else, so the check can fail
    with torch.no_grad():
        assert not torch.allclose(shared, head(x.flip(0).repeat(k, 1, 1, 1), decoded))


def test_a_new_head_is_the_plain_decoder() -> None:
    config = ModelConfig(architecture="conv", conv_channels=(4, 8), latent_dim=3, pixel_context_layers=2)
    model = build_model(config, (1, 12, 12))
    z = torch.randn(5, 3)
    decoded = model.decode(z)
    assert decoded.shape == (5, 1 + CONTEXT_FEATURES, 12, 12)  # logits and the head's feature maps
    x = torch.rand(5, 1, 12, 12)
    assert torch.allclose(model.log_likelihood(x, decoded), BernoulliLikelihood().log_prob(x, decoded[:, :1]))
    assert torch.allclose(model.mean_image(decoded), torch.sigmoid(decoded[:, :1]))


@pytest.mark.parametrize("stochastic_layers", [1, 2])
def test_a_model_with_the_head_trains_samples_and_evaluates(stochastic_layers: int) -> None:
    def model_with(head_layers: int) -> VAE:
        torch.manual_seed(0)
        config = ModelConfig(
            architecture="conv",
            conv_channels=(8, 16),
            latent_dim=4,
            stochastic_layers=stochastic_layers,
            top_latent_dim=2,
            top_hidden_size=16,
            pixel_context_layers=head_layers,
            pixel_context_channels=8,
        )
        return build_model(config, (1, 8, 8))

    x = (torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    x[:, :, :, 1::2] = x[:, :, :, ::2]  # each odd column repeats its left neighbour: only the head can see that
    model, plain = model_with(2), model_with(0)
    losses, plain_losses = train_briefly(model, x, steps=100), train_briefly(plain, x, steps=100)
    assert losses[-1] < 0.8 * losses[0]
    # the 32 repeated pixels cost up to 32 ln 2 = 22 nats per image without the head
    assert losses[-1] < plain_losses[-1] - 5.0
    samples = model.sample(3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 8, 8) and ((samples >= 0) & (samples <= 1)).all()
    assert model.reconstruct(x).shape == x.shape
    iwae, elbo = iwae_and_elbo(model, x, k=20)
    assert iwae >= elbo - 1.0  # the K=20 bound is at least the ELBO (up to noise)


def test_bad_head_sizes_are_refused() -> None:
    with pytest.raises(VaekitError, match="--pixel-context-layers -1"):
        resolve(preset="mlp", flags={"model": {"pixel_context_layers": -1}})
    with pytest.raises(VaekitError, match="--pixel-context-channels 0"):
        resolve(preset="mlp", flags={"model": {"pixel_context_channels": 0}})
