"""Optimisers over a dict of named arrays: SGD and Adam, weight decay, global-norm clipping."""
from __future__ import annotations

import math

import numpy as np


def clip_global_norm(grads: dict, max_norm: float | None, xp=np) -> float:
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``."""
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    if max_norm and norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    return norm


class SGD:
    def __init__(self, lr=0.01, momentum=0.0, weight_decay=0.0, clip=None):
        self.lr, self.momentum, self.weight_decay, self.clip = lr, momentum, weight_decay, clip
        self.velocity = {}

    def step(self, params: dict, grads: dict):
        clip_global_norm(grads, self.clip)
        for name, g in grads.items():
            p = params[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.velocity.setdefault(name, np.zeros_like(p))
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g

    def state(self) -> dict:
        return {f"velocity/{k}": v for k, v in self.velocity.items()}

    def state_layout(self, params: dict) -> dict:
        """``{name: (shape, dtype)}`` of ``state()`` once a step has updated ``params``."""
        if not self.momentum:
            return {}
        return {f"velocity/{k}": (p.shape, p.dtype) for k, p in params.items()}

    def load_state(self, state: dict):
        self.velocity = {k.split("/", 1)[1]: v for k, v in state.items() if k.startswith("velocity/")}

    def forget(self, name: str, index):
        """Entries ``index`` of parameter ``name`` start afresh (a new synapse has no history)."""
        if name in self.velocity:
            self.velocity[name][index] = 0


class Adam:
    """Adam (Kingma & Ba 2015) with decoupled weight decay (AdamW) when weight_decay > 0."""

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, clip=None):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.clip = weight_decay, clip
        self.m, self.v, self.t = {}, {}, 0

    def step(self, params: dict, grads: dict):
        clip_global_norm(grads, self.clip)
        self.t += 1
        b1, b2 = self.betas
        scale = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for name, g in grads.items():
            p = params[name]
            m = self.m.setdefault(name, np.zeros_like(p))
            v = self.v.setdefault(name, np.zeros_like(p))
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            if self.weight_decay:
                p -= self.lr * self.weight_decay * p
            p -= scale * m / (np.sqrt(v) + self.eps)

    def state(self) -> dict:
        out = {f"m/{k}": a for k, a in self.m.items()}
        out.update({f"v/{k}": a for k, a in self.v.items()})
        out["t"] = np.array(self.t)
        return out

    def state_layout(self, params: dict) -> dict:
        """``{name: (shape, dtype)}`` of ``state()`` once a step has updated ``params``."""
        layout = {f"{moment}/{k}": (p.shape, p.dtype) for moment in ("m", "v") for k, p in params.items()}
        layout["t"] = ((), np.dtype(np.int64))
        return layout

    def load_state(self, state: dict):
        self.m = {k[2:]: a for k, a in state.items() if k.startswith("m/")}
        self.v = {k[2:]: a for k, a in state.items() if k.startswith("v/")}
        self.t = int(state.get("t", 0))

    def forget(self, name: str, index):
        """Entries ``index`` of parameter ``name`` start afresh (a new synapse has no history):
        both moments zero."""
        for moments in (self.m, self.v):
            if name in moments:
                moments[name][index] = 0


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
