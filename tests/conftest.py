import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A pipeline folder of the `tiny` preset after 3 training steps (real, untrained)."""
    from fineimagen.train.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny-model")
    result = train(TrainConfig(preset="tiny", out=str(root / "run"), steps=3, batch_size=4,
                               warmup=1, mixed_precision="no", channels_last=False),
                   progress=False)
    return result.folder
