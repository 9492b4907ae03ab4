import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def ka_small():
    """A 400-particle Kob-Andersen configuration at T = 0.6 made with real LAMMPS."""
    from glassmd.testing import ka_configuration

    return ka_configuration(n=400)


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
