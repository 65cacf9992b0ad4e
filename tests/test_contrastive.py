import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from zerocon.contrastive import PatchSampleMLP, patch_nce_feature_loss, patch_nce_loss


def _hand_nce(q, k, tau):
    """Loop-by-loop PatchNCE of one image: q, k are (n, C) normalised rows."""
    losses = []
    for i in range(q.shape[0]):
        pos = math.exp(float(q[i] @ k[i]) / tau)
        neg = sum(math.exp(float(q[i] @ k[j]) / tau) for j in range(q.shape[0]) if j != i)
        neg += math.exp(-10.0 / tau)  # the diagonal of the negative matrix (CUT fills it with -10)
        losses.append(-math.log(pos / (pos + neg)))
    return torch.tensor(losses)


def test_patch_nce_matches_hand_computation():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(2, 5, 3, generator=g), dim=-1)
    k = F.normalize(torch.randn(2, 5, 3, generator=g), dim=-1)
    got = patch_nce_loss(q, k, temperature=0.5)
    want = torch.cat([_hand_nce(q[b], k[b], 0.5) for b in range(2)])
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)


def test_patch_nce_minibatch_negatives_use_other_images():
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(2, 3, 4, generator=g), dim=-1)
    k = F.normalize(torch.randn(2, 3, 4, generator=g), dim=-1)
    got = patch_nce_loss(q, k, temperature=0.2, negatives_from_minibatch=True)
    want = _hand_nce(q.reshape(6, 4), k.reshape(6, 4), 0.2)
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)


def test_identical_features_give_lower_loss_than_shuffled():
    g = torch.Generator().manual_seed(2)
    feat = torch.randn(1, 8, 16, 16, generator=g)
    same = patch_nce_feature_loss(feat, feat, num_patches=64, generator=torch.Generator().manual_seed(0))
    other = patch_nce_feature_loss(
        feat.flip(-1), feat, num_patches=64, generator=torch.Generator().manual_seed(0)
    )
    assert same < other


def test_keys_are_detached_and_query_gets_gradient():
    q = torch.randn(1, 4, 8, 8, requires_grad=True)
    k = torch.randn(1, 4, 8, 8, requires_grad=True)
    patch_nce_feature_loss(q, k, num_patches=16, generator=torch.Generator().manual_seed(0)).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_mlp_heads_exist_before_forward_and_reuse_ids():
    heads = PatchSampleMLP([3, 5], out_channels=8)
    assert sum(p.numel() for p in heads.parameters()) == (3 * 8 + 8 + 8 * 8 + 8) + (5 * 8 + 8 + 8 * 8 + 8)
    feats = [torch.randn(2, 3, 6, 6), torch.randn(2, 5, 4, 4)]
    out, ids = heads(feats, num_patches=10, generator=torch.Generator().manual_seed(0))
    assert [o.shape for o in out] == [torch.Size([2, 10, 8]), torch.Size([2, 10, 8])]
    again, _ = heads(feats, location_ids=ids)
    torch.testing.assert_close(out[0], again[0])
    torch.testing.assert_close(out[0].norm(dim=-1), torch.ones(2, 10))


def test_every_public_name_of_the_package_resolves():
    import zerocon
    import zerocon.contrastive
    import zerocon.edit.pipeline
    import zerocon.errors
    import zerocon.images

    assert sorted(zerocon.__all__) == sorted(
        ["ZeroconError", "load_image", "patch_nce_loss", "PatchSampleMLP", "ZeroConPipeline", "__version__"]
    )
    # each lazy name is the very object of its module, not a copy or a stand-in
    assert zerocon.ZeroconError is zerocon.errors.ZeroconError
    assert zerocon.load_image is zerocon.images.load_image
    assert zerocon.patch_nce_loss is patch_nce_loss is zerocon.contrastive.patch_nce_loss
    assert zerocon.PatchSampleMLP is PatchSampleMLP
    assert zerocon.ZeroConPipeline is zerocon.edit.pipeline.ZeroConPipeline
    assert isinstance(zerocon.__version__, str) and zerocon.__version__[0].isdigit()
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        zerocon.no_such_name  # noqa: B018
    # and importing the package loads none of the heavy libraries (the names resolve on first use)
    probe = "import sys, zerocon; print(sorted({'torch', 'diffusers', 'PIL'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout
