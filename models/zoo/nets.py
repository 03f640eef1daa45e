"""Waveform architectures of the zoo: ResNet1D, a convolutional GRU and a convolutional transformer.

Every waveform module takes ``(batch, leads, samples)`` millivolts at 250 Hz and returns one AF logit per
window. They share :class:`WaveformNet`: average-pool down to ``250 / downsample`` Hz, per-lead
standardisation (zero mean, unit SD, clipped), then the family's *per-lead* encoder with shared weights
and a learned per-lead offset, time pooling (mean and max), *lead pooling* (mean and max over leads) and
a linear head. Lead pooling lets a two-lead model learn from one-lead windows too (CinC 2017 has one
lead), while serving always hands it both leads. The calibration temperature is a buffer, so it travels
in the state dict: ``probability(x) = sigmoid(forward(x) / temperature)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from torch import nn

from models.errors import ModelError

__all__ = ["STANDARDISED_CLIP", "ConvGRU", "ConvTransformer", "ResNet1D", "WaveformNet"]

STANDARDISED_CLIP = 12.0
"""Standardised samples are clipped to +/- this many SDs (spikes and rail-to-rail artefacts)."""
SD_FLOOR_MV = 0.01
"""Added to the per-lead SD (mV) so a flat lead does not blow up."""


class WaveformNet(nn.Module):
    """Shared front end and head of the waveform families.

    Parameters
    ----------
    leads : int
        Leads the model is built for (1 or 2); fewer may be passed while training.
    embed_dim : int
        Width of the per-lead embedding the encoder produces after time pooling.
    downsample : int
        Average-pooling factor applied to the 250 Hz input (2: the encoder sees 125 Hz).
    dropout : float
        Dropout before the head (training only).
    n_rr : int
        When positive, the model also reads the window's RR feature vector (``n_rr`` entries,
        standardised with the ``rr_mean``/``rr_std`` buffers) through a small dense branch joined at the
        head: a hybrid of the waveform and the RR-feature views.
    """

    temperature: torch.Tensor
    rr_mean: torch.Tensor
    rr_std: torch.Tensor

    def __init__(self, leads: int, embed_dim: int, downsample: int, dropout: float, n_rr: int = 0) -> None:
        super().__init__()
        if leads not in (1, 2):
            raise ModelError(f"leads must be 1 or 2, got {leads}")
        if downsample < 1:
            raise ModelError(f"downsample must be >= 1, got {downsample}")
        if n_rr < 0:
            raise ModelError(f"n_rr must be >= 0, got {n_rr}")
        self.leads = leads
        self.downsample = downsample
        self.n_rr = n_rr
        rr_width = 32 if n_rr else 0
        self.rr_branch: nn.Module | None = None
        if n_rr:
            self.rr_branch = nn.Sequential(nn.Linear(n_rr, rr_width), nn.GELU())
            self.register_buffer("rr_mean", torch.zeros(n_rr))
            self.register_buffer("rr_std", torch.ones(n_rr))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * embed_dim + rr_width, 1))
        self.register_buffer("temperature", torch.ones(()))

    @property
    def uses_rr(self) -> bool:
        """Whether ``forward`` needs the RR feature vectors."""
        return self.n_rr > 0

    def set_rr_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training-set RR feature mean and SD (zero SDs become 1)."""
        if not self.n_rr or mean.shape != (self.n_rr,) or std.shape != (self.n_rr,):
            raise ModelError(f"mean/std must have shape ({self.n_rr},) on a model built with n_rr > 0")
        self.rr_mean.copy_(mean.to(self.rr_mean))
        self.rr_std.copy_(torch.where(std > 0, std, torch.ones_like(std)).to(self.rr_std))

    def set_temperature(self, temperature: float) -> None:
        """Store the calibration temperature (> 0)."""
        if not temperature > 0:
            raise ModelError(f"temperature must be positive, got {temperature}")
        self.temperature.fill_(float(temperature))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample and standardise each lead: ``(B, L, T)`` mV -> ``(B * L, 1, T / downsample)``."""
        if x.ndim != 3 or not 1 <= x.shape[1] <= self.leads:
            raise ModelError(f"expected (batch, 1..{self.leads} leads, samples), got {tuple(x.shape)}")
        b, n_leads, t = x.shape
        x = x.reshape(b * n_leads, 1, t)
        if self.downsample > 1:
            x = F.avg_pool1d(x, self.downsample)
        x = x - x.mean(dim=-1, keepdim=True)
        x = x / (x.std(dim=-1, keepdim=True) + SD_FLOOR_MV)
        return x.clamp(-STANDARDISED_CLIP, STANDARDISED_CLIP)

    stem: nn.Module
    lead_offset: nn.Parameter

    def body(self, h: torch.Tensor) -> torch.Tensor:
        """Per-lead embedding ``(N, embed_dim)`` from stem features ``(N, C, T'')``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Uncalibrated AF logits.

        Parameters
        ----------
        x : torch.Tensor
            Windows in mV at 250 Hz, shape ``(batch, leads, samples)``, float32.
        rr : torch.Tensor, optional
            RR feature vectors, shape ``(batch, n_rr)``; required when ``n_rr > 0``, ignored otherwise.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(batch,)``.
        """
        return self.forward_parts([x], [rr])

    def forward_parts(self, parts: Sequence[torch.Tensor], rr_parts: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Logits of several sub-batches that differ in lead count, run as one batch through the encoder.

        Training mixes one-lead (CinC) and two-lead (MIT-BIH) windows; running them through the encoder
        together keeps batch-norm statistics those of the mixture rather than alternating between
        data sets. Returns the logits of the parts, concatenated in order.
        """
        prepared = [self.prepare(x) for x in parts]
        h = self.stem(torch.cat(prepared))
        chunks = h.split([p.shape[0] for p in prepared])
        h = torch.cat([_add_lead_offset(c, self.lead_offset, x.shape[1]) for c, x in zip(chunks, parts, strict=True)])
        emb_all = self.body(h).split([p.shape[0] for p in prepared])
        logits = []
        for emb, x, rr in zip(emb_all, parts, rr_parts, strict=True):
            b, n_leads = x.shape[0], x.shape[1]
            emb = emb.reshape(b, n_leads, -1)
            pooled = [emb.mean(dim=1), emb.amax(dim=1)]
            if self.rr_branch is not None:
                if rr is None or rr.shape != (b, self.n_rr):
                    raise ModelError(f"this model needs RR vectors of shape ({b}, {self.n_rr})")
                z = ((rr - self.rr_mean) / self.rr_std).clamp(-STANDARDISED_CLIP, STANDARDISED_CLIP)
                pooled.append(self.rr_branch(z))
            logits.append(self.head(torch.cat(pooled, dim=-1)).squeeze(-1))
        return torch.cat(logits)

    def probability(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Calibrated AF probability, ``sigmoid(logit / temperature)``, shape ``(batch,)``."""
        return torch.sigmoid(self.forward(x, rr) / self.temperature)


def _lead_offset(leads: int, channels: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(leads, channels, 1))


def _add_lead_offset(h: torch.Tensor, offset: torch.Tensor, n_leads: int) -> torch.Tensor:
    """Add each lead's learned offset to its stem features ``(B * L, C, T)``."""
    bl, c, t = h.shape
    return (h.reshape(bl // n_leads, n_leads, c, t) + offset[:n_leads].unsqueeze(0)).reshape(bl, c, t)


def _time_pool(h: torch.Tensor) -> torch.Tensor:
    """Mean and max over the last (time) axis: ``(N, C, T)`` -> ``(N, 2C)``."""
    return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1)


class _Residual(nn.Module):
    """Two convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet1D(WaveformNet):
    """1-D residual network (the HOLMES zoo family) on each lead.

    A stride-2 stem convolution, then ``depth`` residual blocks; the first four halve the time axis,
    and the channel count doubles every second block up to ``4 * width``. At 125 Hz input four
    strided blocks leave about 4 feature vectors per second with a receptive field of several beats.

    Parameters
    ----------
    leads : int
        1 or 2.
    width : int
        Channels of the stem and the first blocks.
    depth : int
        Number of residual blocks.
    kernel_size : int
        Kernel of the block convolutions (odd).
    downsample : int
        Input average-pooling factor (2: 125 Hz).
    dropout : float
        Dropout before the head.
    n_rr : int
        RR feature vector length for the hybrid head (0: waveform only).
    """

    def __init__(
        self,
        leads: int = 1,
        width: int = 16,
        depth: int = 4,
        kernel_size: int = 7,
        downsample: int = 2,
        dropout: float = 0.1,
        n_rr: int = 0,
    ) -> None:
        if width < 1 or depth < 1 or kernel_size % 2 == 0:
            raise ModelError(f"bad ResNet1D shape: width={width}, depth={depth}, kernel_size={kernel_size}")
        channels = [width * 2 ** min(i // 2, 2) for i in range(depth)]
        super().__init__(leads, 2 * channels[-1], downsample, dropout, n_rr)
        self.stem = nn.Sequential(nn.Conv1d(1, width, 15, 2, 7, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        self.lead_offset = _lead_offset(leads, width)
        blocks: list[nn.Module] = []
        c_in = width
        for i, c_out in enumerate(channels):
            blocks.append(_Residual(c_in, c_out, kernel_size, 2 if i < 4 else 1))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        return _time_pool(self.blocks(h))


def _conv_stem(width: int, n_strided: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 1
    for _ in range(n_strided):
        layers += [nn.Conv1d(c_in, width, 7, 2, 3, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        c_in = width
    return nn.Sequential(*layers)


class ConvGRU(WaveformNet):
    """Convolutional stem then a bidirectional GRU over the feature sequence, on each lead.

    Parameters
    ----------
    leads : int
        1 or 2.
    width : int
        Channels of the convolutional stem.
    hidden : int
        GRU hidden size per direction.
    stem_strides : int
        Stride-2 convolutions in the stem; 4 at 125 Hz gives a 7.8 Hz sequence (78 steps per 10 s).
    downsample : int
        Input average-pooling factor.
    dropout : float
        Dropout before the head.
    n_rr : int
        RR feature vector length for the hybrid head (0: waveform only).
    """

    def __init__(
        self,
        leads: int = 1,
        width: int = 16,
        hidden: int = 32,
        stem_strides: int = 4,
        downsample: int = 2,
        dropout: float = 0.1,
        n_rr: int = 0,
    ) -> None:
        if width < 1 or hidden < 1 or stem_strides < 1:
            raise ModelError(f"bad ConvGRU shape: width={width}, hidden={hidden}, stem_strides={stem_strides}")
        super().__init__(leads, 4 * hidden, downsample, dropout, n_rr)
        self.stem = _conv_stem(width, stem_strides)
        self.lead_offset = _lead_offset(leads, width)
        self.gru = nn.GRU(width, hidden, batch_first=True, bidirectional=True)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(h.transpose(1, 2))
        return _time_pool(out.transpose(1, 2))


class ConvTransformer(WaveformNet):
    """Convolutional tokeniser then a small pre-norm transformer encoder, on each lead.

    Positions enter through a depthwise convolution over the tokens (no fixed sequence length).

    Parameters
    ----------
    leads : int
        1 or 2.
    d_model : int
        Token width.
    heads : int
        Attention heads.
    layers : int
        Encoder layers.
    stem_strides : int
        Stride-2 convolutions in the tokeniser (4 at 125 Hz: one token per 128 ms).
    downsample : int
        Input average-pooling factor.
    dropout : float
        Dropout in the encoder and before the head.
    n_rr : int
        RR feature vector length for the hybrid head (0: waveform only).
    """

    def __init__(
        self,
        leads: int = 1,
        d_model: int = 32,
        heads: int = 4,
        layers: int = 2,
        stem_strides: int = 4,
        downsample: int = 2,
        dropout: float = 0.1,
        n_rr: int = 0,
    ) -> None:
        if d_model % heads != 0 or layers < 1:
            raise ModelError(f"bad ConvTransformer shape: d_model={d_model}, heads={heads}, layers={layers}")
        super().__init__(leads, 2 * d_model, downsample, dropout, n_rr)
        self.stem = _conv_stem(d_model, stem_strides)
        self.lead_offset = _lead_offset(leads, d_model)
        self.position = nn.Conv1d(d_model, d_model, 9, padding=4, groups=d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def body(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.position(h)
        out = self.norm(self.encoder(h.transpose(1, 2)))
        return _time_pool(out.transpose(1, 2))
