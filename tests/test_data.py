"""Toy sets, preprocessing, batching and augmentation."""

from __future__ import annotations

import pytest
import torch

from nnlab.data import augment, describe, toy
from nnlab.data.loader import batch_indices, prepare, statistics, steps_per_epoch


@pytest.mark.parametrize("name", ["moons", "circles", "spirals", "xor", "blobs"])
def test_toy_sets_are_deterministic_balanced_and_sized(name):
    make = getattr(toy, name)
    a, b, c = (
        make(n_train=300, n_test=100, seed=1),
        make(n_train=300, n_test=100, seed=1),
        make(n_train=300, n_test=100, seed=2),
    )
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])
    x, y, xt, yt = a
    assert x.shape == (300, 2) and xt.shape == (100, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    counts = torch.bincount(torch.cat([y, yt]))
    assert counts.max() - counts.min() <= 1  # balanced classes


def test_describe_knows_kind_and_classes_without_loading():
    assert describe({"_target_": "nnlab.data.toy.spirals", "classes": 5}) == ("points", 5)
    assert describe({"_target_": "nnlab.data.toy.moons"}) == ("points", 2)
    assert describe({"_target_": "nnlab.data.toy.blobs"}) == ("points", 4)
    assert describe({"_target_": "nnlab.data.images.cifar10"}) == ("images", 10)


def test_preprocessing_statistics_come_from_the_training_split_only():
    g = torch.Generator().manual_seed(0)
    x_train = torch.randn(1000, 2, generator=g) * 3 + 5
    x_test = torch.randn(500, 2, generator=g) * 10 - 40  # a very different test set
    y = torch.zeros(1000, dtype=torch.long)
    data = prepare(
        (x_train, y, x_test, y[:500]),
        kind="points",
        num_classes=2,
        val_fraction=0.2,
        preprocess="standardize",
        subset=None,
    )
    assert data.train.x.mean(0).abs().max() < 1e-5 and (data.train.x.std(0) - 1).abs().max() < 1e-3
    assert data.val.x.mean(0).abs().max() > 1e-3  # validation is standardized with the training statistics
    assert data.test.x.mean(0).max() < -10  # and so is the test set: it stays far away
    assert len(data.train) == 800 and len(data.val) == 200


@pytest.mark.parametrize("how", ["pca", "whiten"])
def test_pca_and_whitening_decorrelate_with_the_training_statistics(how):
    """Note 001: PCA rotates the centred data onto its principal axes (a diagonal covariance, variances
    falling); whitening also gives each axis unit variance; `components` keeps the top k; the other splits
    go through the training split's projection; unproject() maps back as near as the components allow."""
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 0.1]])
    x_train, x_test = torch.randn(2000, 3, generator=g) @ mix + 7, torch.randn(500, 3, generator=g) @ mix + 7
    y = torch.zeros(2000, dtype=torch.long)
    kw = dict(kind="points", num_classes=2, val_fraction=0.0, preprocess=how, subset=None)
    data = prepare((x_train, y, x_test, y[:500]), **kw)
    cov = torch.cov(data.train.x.T)
    assert data.train.x.mean(0).abs().max() < 1e-4 and (cov - torch.diag(cov.diag())).abs().max() < 1e-3
    if how == "pca":
        assert (cov.diag().diff() < 0).all() and torch.allclose(cov.trace(), torch.cov(x_train.T).trace(), rtol=1e-4)
    else:
        assert torch.allclose(cov, torch.eye(3), atol=1e-3)
    assert torch.allclose(data.normalize(x_test), data.test.x, atol=1e-4)
    assert torch.allclose(data.unproject(data.test.x), x_test, atol=1e-3)  # all components: lossless
    two = prepare((x_train, y, x_test, y[:500]), **kw, components=2)
    assert two.in_shape == (2,) and torch.allclose(two.train.x, data.train.x[:, :2], atol=1e-4)


def test_center_and_none_and_per_channel_statistics():
    x = torch.rand(50, 3, 4, 4) + torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1)
    mean, std = statistics(x, "standardize")
    assert mean.shape == (1, 3, 1, 1) and torch.allclose(mean.flatten(), x.mean((0, 2, 3)))
    mean, std = statistics(x, "center")
    assert torch.all(std == 1)
    mean, std = statistics(x, "none")
    assert torch.all(mean == 0) and torch.all(std == 1)


def test_subset_keeps_the_first_n_training_examples_and_the_full_statistics():
    x = torch.arange(100.0).view(100, 1).repeat(1, 2)
    y = torch.zeros(100, dtype=torch.long)
    full = prepare((x, y, x, y), kind="points", num_classes=2, val_fraction=0.0, preprocess="center", subset=None)
    sub = prepare((x, y, x, y), kind="points", num_classes=2, val_fraction=0.0, preprocess="center", subset=10)
    assert len(sub.train) == 10 and torch.equal(sub.train.x, full.train.x[:10]) and torch.equal(sub.mean, full.mean)


def test_batches_cover_every_example_once_and_reshuffle_each_epoch():
    g = torch.Generator().manual_seed(0)
    first = torch.cat(list(batch_indices(103, 10, g, torch.device("cpu"))))
    second = torch.cat(list(batch_indices(103, 10, g, torch.device("cpu"))))
    assert sorted(first.tolist()) == list(range(103)) and not torch.equal(first, second)
    assert steps_per_epoch(103, 10) == 11 and steps_per_epoch(101, 10) == 10  # a last batch of 1 is dropped
    assert len(list(batch_indices(101, 10, g, torch.device("cpu")))) == 10


def test_crop_flip_moves_pixels_but_keeps_their_values():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    out = augment.crop_flip(x, g)
    assert out.shape == x.shape and not torch.equal(out, x)
    centre = x[:, :, 8:24, 8:24]  # a shift of at most 4 and a flip keep the centre inside the image
    for i in range(8):
        assert any(
            torch.equal(out[i, :, 8 + dy : 24 + dy, 8 + dx : 24 + dx], c)
            for c in (centre[i], centre[i].flip(2))
            for dy in range(-4, 5)
            for dx in range(-4, 5)
        )


def test_random_affine_keeps_shape_and_mass_roughly():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1
    out = augment.random_affine(x, g)
    assert out.shape == x.shape and not torch.equal(out, x)
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.3)


def test_a_stacks_shared_images_read_as_a_run_alones_float_copy():
    """prepare(shared=True) (a stack's run: rows of one uint8 tensor, normalized as read) gives, batch by
    batch, exactly what a run alone's normalized float copy holds; two runs share the one tensor."""
    g = torch.Generator().manual_seed(0)
    raw = (
        torch.randint(0, 256, (300, 3, 8, 8), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (300,), generator=g),
        torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (50,), generator=g),
    )
    common = dict(kind="images", num_classes=10, val_fraction=0.2, preprocess="standardize", subset=200, seed=3)
    alone, member, other = (
        prepare(raw, **common),
        prepare(raw, **common, shared=True),
        prepare(raw, **{**common, "seed": 4}, shared=True),
    )
    idx = torch.tensor([5, 0, 199, 17])
    for a, m in ((alone.train, member.train), (alone.val, member.val), (alone.test, member.test)):
        assert len(a) == len(m) and a.x.shape == m.x.shape and torch.equal(a.y, m.y)
        assert torch.equal(a.x[idx % len(a)], m.x[idx % len(m)]) and torch.equal(a.x[2:9], m.x[2:9])
    assert member.train.x.raw is other.train.x.raw and member.in_shape == alone.in_shape == (3, 8, 8)
    assert not torch.equal(member.mean, other.mean)  # each its own statistics, from its own split
