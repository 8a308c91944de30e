"""Selecting the ops backend: a process-wide setting and blocks that override it in their own thread alone."""

import threading

import pytest

from fastgan.ops import backend, current_backend, set_backend


@pytest.fixture(autouse=True)
def _restore_the_process_backend():
    previous = current_backend()
    yield
    set_backend(previous)


def test_blocks_nest_and_restore_and_unknown_names_are_refused():
    set_backend("fused-torch")
    with backend("triton"):
        with backend("torch"):
            assert current_backend() == "torch"
        assert current_backend() == "triton"
    assert current_backend() == "fused-torch"
    with pytest.raises(ValueError, match="unknown ops backend 'cuda'"), backend("cuda"):
        pass
    with pytest.raises(ValueError, match="choose one of torch, fused-torch"):
        set_backend("fused")
    assert current_backend() == "fused-torch"


def test_a_block_holds_in_its_own_thread_only():
    """A server thread benchmarking "triton" must not switch the backend another thread is upscaling with; a
    process-wide choice reaches every thread outside a block."""
    set_backend("fused-torch")
    inside, seen_elsewhere = threading.Event(), []

    def other_thread():
        inside.wait()
        seen_elsewhere.append(current_backend())

    worker = threading.Thread(target=other_thread)
    worker.start()
    with backend("triton"):
        inside.set()
        worker.join()
        assert current_backend() == "triton"
    assert seen_elsewhere == ["fused-torch"]
