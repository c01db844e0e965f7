"""The ConvLSTM cell of the slice-recurrent heads (spec/modules.md §1), exactly as the released code builds it.

One convolution on ``concat[x_t, h_{t-1}]`` (in + hidden -> 4 * hidden channels, kernel 5, padding 2, bias) whose
output is split in the order i, f, o, g::

    i = sigmoid(A_i)  f = sigmoid(A_f)  o = sigmoid(A_o)  g = tanh(A_g)
    c_t = f * c_{t-1} + i * g        h_t = o * tanh(c_t)        h_0 = c_0 = 0

No peepholes, no normalisation, PyTorch's default initialisation. ``run`` returns every state of the last step
(h, c, f, g, i, o) because the attention of SA-LSTM / LSTM-SA is built from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


@dataclass
class LSTMStates:
    """States of one ConvLSTM step, each (B, hidden, H, W)."""

    h: torch.Tensor
    c: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    i: torch.Tensor
    o: torch.Tensor


class ConvLSTMCell(nn.Module):
    def __init__(self, in_channels: int = 64, hidden: int = 64, kernel_size: int = 5, bias: bool = True):
        super().__init__()
        self.in_channels, self.hidden = int(in_channels), int(hidden)
        self.conv = nn.Conv2d(self.in_channels + self.hidden, 4 * self.hidden, kernel_size,
                              padding=kernel_size // 2, bias=bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> LSTMStates:
        a_i, a_f, a_o, a_g = torch.split(self.conv(torch.cat([x, h], dim=1)), self.hidden, dim=1)
        i, f, o, g = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.sigmoid(a_o), torch.tanh(a_g)
        c = f * c + i * g
        h = o * torch.tanh(c)
        return LSTMStates(h=h, c=c, f=f, g=g, i=i, o=o)

    def run(self, sequence: Sequence[torch.Tensor]) -> LSTMStates:
        """Run over ``sequence`` (each (B, in, H, W)) from zero states; the states of the last step."""
        x0 = sequence[0]
        zeros = x0.new_zeros((x0.shape[0], self.hidden, *x0.shape[2:]))
        h, c, states = zeros, zeros, None
        for x in sequence:
            states = self(x, h, c)
            h, c = states.h, states.c
        return states
