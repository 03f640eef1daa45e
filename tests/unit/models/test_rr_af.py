from __future__ import annotations

import io

import pytest
import torch

from models import ModelError, RRAFNet


def _model(hidden: tuple[int, ...] = (8,)) -> RRAFNet:
    torch.manual_seed(0)
    return RRAFNet(5, hidden=hidden, dropout=0.0).eval()


def test_logit_shape_and_probability() -> None:
    model = _model()
    x = torch.randn(7, 5)
    logits = model(x)
    assert logits.shape == (7,)
    torch.testing.assert_close(model.probability(x), torch.sigmoid(logits))


def test_temperature_divides_the_logit() -> None:
    model = _model()
    x = torch.randn(4, 5)
    model.set_temperature(2.5)
    torch.testing.assert_close(model.probability(x), torch.sigmoid(model(x) / 2.5))
    with pytest.raises(ModelError):
        model.set_temperature(0.0)


def test_standardisation_is_applied_inside_the_module() -> None:
    model = _model()
    x = torch.randn(6, 5)
    mean = torch.arange(5.0)
    std = torch.tensor([1.0, 2.0, 0.0, 4.0, 5.0])
    reference = model(x)
    model.set_standardisation(mean, std)
    torch.testing.assert_close(model(x * torch.tensor([1.0, 2.0, 1.0, 4.0, 5.0]) + mean), reference)
    assert model.feature_std[2] == 1.0


def test_buffers_travel_in_the_state_dict() -> None:
    model = _model()
    model.set_standardisation(torch.ones(5), torch.full((5,), 3.0))
    model.set_temperature(1.7)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = RRAFNet(5, hidden=(8,), dropout=0.0).eval()
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    assert {"feature_mean", "feature_std", "temperature"} <= set(clone.state_dict())
    x = torch.randn(3, 5)
    torch.testing.assert_close(clone.probability(x), model.probability(x))


def test_extreme_inputs_stay_finite() -> None:
    model = _model()
    assert torch.isfinite(model(torch.full((2, 5), 1e30))).all()


def test_no_hidden_layer_is_logistic_regression() -> None:
    model = _model(hidden=())
    assert sum(p.numel() for p in model.parameters()) == 6


def test_bad_arguments_raise() -> None:
    with pytest.raises(ModelError):
        RRAFNet(0)
    with pytest.raises(ModelError):
        _model().set_standardisation(torch.zeros(4), torch.ones(4))
