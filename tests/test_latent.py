import pytest
import torch

from vaekit.latent import lerp, manifold_codes, principal_axes, slerp, traversal


def test_lerp_and_slerp_endpoints() -> None:
    z0, z1 = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 3.0, -1.0])
    for path in (lerp(z0, z1, 7), slerp(z0, z1, 7)):
        assert path.shape == (7, 3)
        assert torch.allclose(path[0], z0, atol=1e-6) and torch.allclose(path[-1], z1, atol=1e-6)


def test_slerp_follows_the_great_circle_and_interpolates_norms() -> None:
    z0, z1 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0])
    path = slerp(z0, z1, 5)
    assert torch.allclose(path.norm(dim=1), torch.linspace(2.0, 4.0, 5), atol=1e-5)
    angles = torch.atan2(path[:, 1], path[:, 0])
    assert torch.allclose(angles, torch.linspace(0.0, torch.pi / 2, 5), atol=1e-5)
    assert torch.allclose(slerp(z0, 3 * z0, 3), lerp(z0, 3 * z0, 3))  # parallel: falls back


def test_traversal_layout() -> None:
    codes = traversal(torch.zeros(4), [2, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert codes.shape == (6, 4)
    assert codes[:3, 2].tolist() == [-1.0, 0.0, 1.0] and codes[:3, [0, 1, 3]].abs().sum() == 0
    assert codes[3:, 0].tolist() == [-1.0, 0.0, 1.0]


def test_principal_axes_find_the_long_direction() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(5000, 3, generator=generator) * torch.tensor([5.0, 1.0, 0.1]) + 2.0
    mean, axes, std = principal_axes(points, 2)
    assert torch.allclose(mean, torch.full((3,), 2.0), atol=0.2)
    assert abs(axes[0, 0].item()) == pytest.approx(1.0, abs=1e-3)
    assert std[0].item() == pytest.approx(5.0, rel=0.05) and std[1].item() == pytest.approx(1.0, rel=0.05)


def test_manifold_grid_uses_normal_quantiles() -> None:
    codes = manifold_codes(torch.zeros(2), torch.eye(2), torch.ones(2), side=3)
    q = torch.special.ndtri(torch.tensor([1 / 6, 0.5, 5 / 6]))
    assert codes.shape == (9, 2)
    assert torch.allclose(codes[:3, 0], q) and torch.allclose(codes[:3, 1], q.flip(0)[0].expand(3))
