"""One intra-op thread for suites of tiny networks on a shared 2-core machine (avoids oversubscription); a conftest
imports ``one_thread`` to make it autouse for its folder."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
