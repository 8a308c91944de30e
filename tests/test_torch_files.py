"""Damaged or foreign torch files: every loader names the file and what to pass, not torch's weights_only advice."""

import pytest

from fastgan.eval.evaluator import EvaluatorWeightsError, load_evaluator
from fastgan.eval.inception import InceptionWeightsError, load_inception
from fastgan.models.vgg import VGGWeightsError, load_vgg_features
from fastgan.train.checkpoint import CheckpointError, load_checkpoint


@pytest.mark.parametrize(
    ("load", "error", "advice"),
    [
        (load_checkpoint, CheckpointError, "pass a fastgan run directory or its checkpoint.pt"),
        (load_evaluator, EvaluatorWeightsError, "torchvision MobileNetV3-small state dict"),
        (lambda path: load_vgg_features("relu2_2", path), VGGWeightsError, "vgg19-dcbb9e9d.pth"),
        (load_inception, InceptionWeightsError, "pt_inception-2015-12-05-6726825d.pth"),
    ],
    ids=["checkpoint", "evaluator", "vgg", "inception"],
)
def test_a_file_torch_cannot_read_is_named_with_what_to_pass(tmp_path, load, error, advice):
    damaged = tmp_path / "weights.pth"
    damaged.write_text("x\n")  # a text file: torch's error advises weights_only=False, an arbitrary-code risk
    with pytest.raises(error) as raised:
        load(damaged)
    message = str(raised.value)
    assert "cannot read" in message and str(damaged) in message and "truncated file or not a torch file" in message
    assert advice in message and "weights_only" not in message
