import pytest
import torch

from tests.faults import helpers
from tests.threads import one_thread  # noqa: F401  (autouse in this folder)


@pytest.fixture(scope="session")
def _trained_once(tmp_path_factory):
    torch.set_num_threads(1)
    return helpers.trained(tmp_path_factory.mktemp("trained") / "root")


@pytest.fixture
def trained_root(_trained_once, tmp_path):
    """A root with a planned, preprocessed dataset and a trained fold 0 of unet 2d (a private copy)."""
    return helpers.copy_root(_trained_once, tmp_path / "root")


@pytest.fixture
def planned_root(tmp_path):
    return helpers.planned(tmp_path / "root")
