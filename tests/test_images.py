"""Image data through the real CLI: real MNIST (where ../shared/data has it), and CIFAR-10's code path
on a tiny set written in the official cifar-10-batches-py format."""

from __future__ import annotations

import pytest
import torch

from conftest import events, nnlab, summary, train
from nnlab.data import images


@pytest.mark.slow
def test_mnist_mlp_reaches_97_percent(tmp_path, mnist_root):
    run, _ = train(
        tmp_path,
        "data=mnist",
        f"data.source.root={mnist_root}",
        "model.hidden=[256,128]",
        "trainer.epochs=4",
        "trainer.batch_size=128",
        "schedule=cosine",
        "trainer.progress=false",
    )
    s = summary(run)
    assert s["metrics"]["acc/test"] >= 0.97, s["metrics"]
    assert "plots/decision_boundary" not in events(run).Tags()["images"]  # 2-D data only


def test_mnist_is_read_offline_from_the_environment_variable(tmp_path, mnist_root, monkeypatch):
    monkeypatch.setenv("NNLAB_DATA_DIR", str(mnist_root))
    assert images.data_root(None) == mnist_root
    x_train, y_train, x_test, y_test = images.mnist(download=True)  # present: no download is tried
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28) and x_train.dtype == torch.uint8
    assert set(y_test.unique().tolist()) == set(range(10))
    monkeypatch.delenv("NNLAB_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert images.data_root(None) == tmp_path / "nnlab" / "data"


def test_cifar10_cnn_with_augmentation_runs_on_the_official_format(tmp_path, cifar_root):
    run, _ = train(
        tmp_path,
        "data=cifar10",
        f"data.source.root={cifar_root}",
        "data.source.download=false",
        "data.augment=true",
        "model=cnn",
        "model.batch_norm=true",
        "trainer.epochs=2",
        "trainer.batch_size=16",
        "trainer.progress=false",
    )
    s = summary(run)
    assert s["status"] == "ok" and s["steps"] == 2 * 6  # 100 images less 10 for validation, in batches of 16
    x_train, _, x_test, _ = images.cifar10(root=str(cifar_root), download=False)
    assert x_train.shape == (100, 3, 32, 32) and x_test.shape == (20, 3, 32, 32)


def test_missing_data_offline_is_a_clear_error(tmp_path):
    for data, name in (("mnist", "MNIST"), ("cifar10", "CIFAR-10")):
        out = nnlab(
            "train",
            f"data={data}",
            f"data.source.root={tmp_path / 'empty'}",
            "data.source.download=false",
            "trainer.progress=false",
            cwd=tmp_path,
        )
        assert out.returncode == 2
        assert f"{name} is not in {tmp_path / 'empty'}" in out.stderr and "NNLAB_DATA_DIR" in out.stderr
        assert "Traceback" not in out.stderr


def test_a_truncated_mnist_file_is_named(tmp_path, mnist_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in images.MNIST_FILES:
        data = (mnist_root / "MNIST" / "raw" / name).read_bytes()
        (raw / name).write_bytes(data[: len(data) // 2] if name == "t10k-images-idx3-ubyte" else data)
    out = nnlab("train", "data=mnist", f"data.source.root={tmp_path}", "trainer.progress=false", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{raw / 't10k-images-idx3-ubyte'} is truncated or corrupt" in out.stderr


def test_resnet18_pretrained_offline_is_a_clear_error(tmp_path, cifar_root):
    """No ImageNet weights in an empty TORCH_HOME, and no way to fetch them (a proxy that refuses)."""
    env = {
        "TORCH_HOME": str(tmp_path / "torch"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    out = nnlab(
        "train",
        "data=cifar10",
        f"data.source.root={cifar_root}",
        "data.source.download=false",
        "model=resnet18",
        "model.pretrained=true",
        "trainer.progress=false",
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "ImageNet weights" in out.stderr and "model.pretrained=false" in out.stderr and "Traceback" not in out.stderr


def test_resnet18_grey_input_and_new_head():
    from nnlab.nn.backbones import ResNet18

    grey = ResNet18((1, 28, 28), 5, small_input=False)
    assert grey.backbone.conv1.in_channels == 1 and grey.head.out_features == 5
    assert grey(torch.zeros(2, 1, 28, 28)).shape == (2, 5)
