"""PyTorch peer: BPTT by autograd, with the spike as a custom autograd function.

The same equations as the JAX peers (see peers_jax): symgrad's ALIF, or LIF without the
adaptation, the reset held out of the gradient with ``detach``, a leaky readout and a per-step
cross-entropy summed over time and averaged over the batch. The time loop is eager Python,
as a typical PyTorch SNN trainer writes it.
"""
from __future__ import annotations

try:
    import torch

    MISSING = None
except ImportError as err:  # the benchmark skips this peer and says why
    MISSING = f"torch is not installed ({err})"

NAME = "PyTorch"

if MISSING is None:
    class Spike(torch.autograd.Function):
        """Heaviside forward, symgrad's triangle surrogate 0.3/v_th max(0, 1 - |x|/v_th) backward."""

        @staticmethod
        def forward(ctx, x, v_th):
            ctx.save_for_backward(x)
            ctx.v_th = v_th
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            v_th = ctx.v_th
            psi = 0.3 / v_th * torch.clamp(1.0 - x.abs() / v_th, min=0.0)
            return grad * psi, None


class Peer:
    """PyTorch BPTT gradients of one network's loss; built from a symgrad Network's values."""

    def __init__(self, net):
        from .common import host_params, neuron_constants

        self.c = neuron_constants(net)
        self.params = {k: torch.tensor(v, requires_grad=True) for k, v in host_params(net).items()}

    def _loss(self, x, labels):
        c, p = self.c, self.params
        steps, batch = x.shape[:2]
        v = a = z = x.new_zeros((batch, p["W_in"].shape[0]))
        y = x.new_zeros((batch, p["W_out"].shape[0]))
        total = 0.0
        for t in range(steps):
            I = x[t] @ p["W_in"].T
            if c["recurrent"]:
                I = I + z @ p["W_rec"].T
            v = c["alpha"] * v + I - c["v_th"] * z.detach()
            if c["adaptive"]:
                a = c["rho"] * a + z
            z = Spike.apply(v - c["v_th"] - c["beta"] * a, c["v_th"])
            y = c["kappa"] * y + z @ p["W_out"].T + p["b_out"]
            total = total + torch.nn.functional.cross_entropy(y, labels, reduction="sum") / batch
        return total

    def bptt(self, x, labels):
        for value in self.params.values():
            value.grad = None
        loss = self._loss(torch.as_tensor(x), torch.as_tensor(labels))
        loss.backward()
        return float(loss.detach()), {k: v.grad.numpy() for k, v in self.params.items()}
