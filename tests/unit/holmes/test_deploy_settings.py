"""Settings a deployment sets through the environment: the worker's device and the api's CORS origins."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from holmes.serving import resolve_device
from holmes.settings import ApiSettings, WorkerSettings


def test_device_comes_from_holmes_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WorkerSettings(_env_file=None).device == "cpu"  # type: ignore[call-arg]
    monkeypatch.setenv("HOLMES_DEVICE", "auto")
    assert WorkerSettings(_env_file=None).device == "auto"  # type: ignore[call-arg]
    monkeypatch.setenv("HOLMES_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        WorkerSettings(_env_file=None)  # type: ignore[call-arg]


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="HOLMES_DEVICE=cuda"):
        resolve_device("cuda")  # never a silent fallback to CPU
    with pytest.raises(ValueError, match="cpu, cuda or auto"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda"


def test_worker_refuses_cuda_without_a_gpu(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from holmes.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("HOLMES_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("HOLMES_DEVICE", "cuda")
    assert main(["worker"]) == 2
    assert "sees no GPU" in capsys.readouterr().err


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApiSettings(_env_file=None).cors_origin_list() == ()  # type: ignore[call-arg]
    monkeypatch.setenv("HOLMES_CORS_ORIGINS", "https://ward.example, http://localhost:3000,")
    settings = ApiSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.cors_origin_list() == ("https://ward.example", "http://localhost:3000")
