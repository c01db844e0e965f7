"""Region outputs through slice modules (head position, deep supervision retargeted) and stack: the region loss
trains them (finite, gradient reaches the weights; ignored voxels get none)."""

import pytest
import torch

from salseg.dataset.labels import parse_labels
from salseg.nets import build, capabilities_of
from salseg.train.losses import make_loss

REGIONS = parse_labels({"background": 0, "wt": [1, 2, 3], "tc": [2, 3], "et": [3], "ignore": 4}, [1, 2, 3], "d")
S = 32


@pytest.mark.parametrize("module", ["lstmsa", "salstm", "stack", "none"])
def test_region_loss_through_modules(module):
    torch.manual_seed(0)
    model = build("unet", module, in_channels=4, num_classes=REGIONS.num_outputs, dim=2, width=4,
                  patch_size=(S, S)).train()
    k = capabilities_of(model).slice_k                               # slice models and stack take K slices
    assert (k is not None) == (module != "none")
    x = torch.randn(2, k, 4, S, S) if k else torch.randn(2, 4, S, S)
    seg = torch.randint(0, 5, (2, 1, S, S))
    out = model(x)
    outs = out if isinstance(out, (list, tuple)) else [out]
    assert all(o.shape[1] == 3 for o in outs)                        # one channel per region at every level
    loss = make_loss(REGIONS)(out, seg)
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
