"""LPIPS (Zhang et al. 2018, v0.1, AlexNet): the `lpips` package's own linear-layer weights on the
features of torchvision's ImageNet AlexNet, measured only when that backbone's weights file is
present (torch hub's cache, or a path given); otherwise the evaluation says so and names the file.

The network is written out here (AlexNet's five convolutions under torchvision's parameter names, so
torchvision's `alexnet-owt-7be5be79.pth` loads as it is, and LPIPS's forward pass) rather than
imported: the `lpips` package imports torchvision, whose PyPI wheel does not load beside the pinned
CPU torch build. From the `lpips` package we read only its weights file (installed without its
dependencies, see the Makefile).
"""
from __future__ import annotations

import importlib.util
import os

import torch
from torch import nn

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, as torch hub caches it
CHANNELS = (64, 192, 384, 256, 256)         # relu1 .. relu5


def backbone_cache_path() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", BACKBONE_FILE)


def linear_weights_path() -> str | None:
    """The `lpips` package's v0.1 AlexNet linear layers (found without importing the package)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "v0.1", "alex.pth")
    return path if os.path.exists(path) else None


def unavailable_reason(backbone: str | None = None) -> str | None:
    """None when LPIPS can be measured; else what is missing and where to put it."""
    if linear_weights_path() is None:
        return "the lpips package is not installed: pip install --no-deps lpips==0.1.4"
    path = backbone or backbone_cache_path()
    if not os.path.exists(path):
        where = (f"--lpips-backbone {backbone} does not exist" if backbone else
                 f"put torchvision's AlexNet weights {BACKBONE_FILE} in {os.path.dirname(path)}")
        return f"LPIPS: not measured ({where}, or pass --lpips-backbone PATH)"
    return None


class AlexFeatures(nn.Module):
    """torchvision's `alexnet().features`, parameter for parameter, returning relu1..relu5."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU())
        self.taps = (1, 4, 7, 9, 11)  # the ReLUs whose outputs LPIPS compares

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


class LPIPS(nn.Module):
    """d(x, y) for images in [-1, 1], (B, 3, H, W) -> (B,)."""

    def __init__(self, backbone_path: str, linear_path: str):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.net = AlexFeatures()
        state = torch.load(backbone_path, map_location="cpu", weights_only=True)
        self.net.load_state_dict({k: v for k, v in state.items() if k.startswith("features.")})
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        linear = torch.load(linear_path, map_location="cpu", weights_only=True)
        for i, lin in enumerate(self.lins):
            lin.weight.data.copy_(linear[f"lin{i}.model.1.weight"])
        self.eval().requires_grad_(False)

    @staticmethod
    def _unit(x: torch.Tensor) -> torch.Tensor:
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)  # channel-wise unit length

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        return sum(lin((self._unit(a) - self._unit(b)) ** 2).mean(dim=(2, 3)).flatten()
                   for lin, a, b in zip(self.lins, fx, fy))


def load(backbone: str | None = None) -> LPIPS | None:
    """The metric, or None when its weights are missing (`unavailable_reason` says which)."""
    if unavailable_reason(backbone) is not None:
        return None
    return LPIPS(backbone or backbone_cache_path(), linear_weights_path())


def lpips_of_strips(metric: LPIPS, got, true) -> float:
    """LPIPS of two RGB uint8 images (H, W, 3), e.g. the 4-view strips of a frame on white."""
    def tensor(a):
        return torch.as_tensor(a).permute(2, 0, 1)[None].float() / 127.5 - 1.0

    return float(metric(tensor(got), tensor(true))[0])

