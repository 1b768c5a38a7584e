"""The layer of `function.py` in plain torch operations: what its second derivatives are taken of.

gpurnn's own backward is a fast first derivative. When a graph of that gradient is asked for
(a gradient penalty, `hvp`, `hessian`), the backward's own backward is the exact vector-Jacobian
product of this reference, through `torch.func` (so it composes with autograd, vmap and
higher orders). Same layout as `function.layer`: per direction weight_ih (d,n), weight_hh (d,d),
b (d,); the reverse direction reads each sequence from its last step; a finished sequence keeps
its state; H is 0 past each length.
"""
from __future__ import annotations

import torch

SIGMAS = {"tanh": torch.tanh, "relu": torch.relu, "logistic": torch.sigmoid, "sigmoid": torch.sigmoid}


def layer(x, h0, lengths, w_ih, w_hh, b, activation):
    """(H (T,B,D·d), h_n (D,B,d)) of x (T,B,n), h0 (D,B,d), lengths (B,) int64 or None,
    w_ih (D,d,n), w_hh (D,d,d), b (D,d)."""
    sigma = SIGMAS[activation]
    T = x.shape[0]
    active = None if lengths is None else (torch.arange(T)[:, None] < lengths[None, :]).to(x.device)[..., None]
    outputs, finals = [], []
    for j in range(w_hh.shape[0]):
        projected = x @ w_ih[j].t() + b[j]
        s, H = h0[j], [None] * T
        for t in (range(T) if j == 0 else reversed(range(T))):
            new = sigma(projected[t] + s @ w_hh[j].t())
            s = new if active is None else torch.where(active[t], new, s)
            H[t] = s if active is None else torch.where(active[t], s, torch.zeros_like(s))
        outputs.append(torch.stack(H))
        finals.append(s)
    return torch.cat(outputs, dim=-1), torch.stack(finals)


def layer_vjp(x, h0, w_ih, w_hh, b, grad_H, grad_h_n, lengths, activation):
    """∂⟨(grad_H, grad_h_n), layer(...)⟩ / ∂(x, h0, w_ih, w_hh, b), in that order."""
    _, pullback = torch.func.vjp(lambda *primals: layer(*primals[:2], lengths, *primals[2:], activation),
                                 x, h0, w_ih, w_hh, b)
    return pullback((grad_H, grad_h_n))


def layer_vjp_vjp(x, h0, w_ih, w_hh, b, grad_H, grad_h_n, lengths, activation, cotangents):
    """The vector-Jacobian product of `layer_vjp` with cotangents of its five results: its
    gradients with respect to (x, h0, w_ih, w_hh, b, grad_H, grad_h_n), in that order."""
    _, pullback = torch.func.vjp(lambda *primals: layer_vjp(*primals, lengths, activation),
                                 x, h0, w_ih, w_hh, b, grad_H, grad_h_n)
    return pullback(tuple(cotangents))
