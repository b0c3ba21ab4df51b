"""The readout's gradients, dL/dW_out and dL/db_out, for e-prop and BPTT alike.

The readout y_t = kappa y_{t-1} + gain (W_out z_t + b_out) + offset (``Network.read``) gives,
with d_t = gain . dL/dy_t (``Network.drive_error``: the error of W_out z_t + b_out),

    dL/dW_out = sum_t dbar_t^T z_t = sum_t d_t^T zbar_t,    dbar_t = d_t + kappa dbar_{t+1},
    dL/db_out = sum_t dbar_t       = sum_t d_t bbar_t,      zbar_t = kappa zbar_{t-1} + z_t,
                                                            bbar_t = kappa bbar_{t-1} + 1.

The two are the same sum in two orders, both exact. BPTT walks the stored steps backward and
filters the error (``BackwardReadout``), which it needs anyway: dL/dz_t = dbar_t W_out. e-prop
walks forward and knows d_t only at step t, with no history to go back to, so it filters the
output instead (``ForwardReadout``): zbar and bbar cost (batch, n) and a number, whatever the
sequence length. Both add each share through ``ReadoutGradient.add``, the one place that knows
how the readout's parameters enter y.
"""
from __future__ import annotations

from .projection import READOUT


class ReadoutGradient:
    """dL/dW_out and dL/db_out (``grads``), summed share by share; empty without readout weights."""

    def __init__(self, net):
        self.net = net
        self.grads = {name: net.xp.zeros_like(net.params[name]) for name in READOUT} if net.readout else {}

    def add(self, err, z, bias=1.0):
        """Add the share of dL/dy ``err`` (batch, K) on the last layer's output ``z`` (batch, n),
        where b_out's own input is ``bias`` (1, or its filtered value); return the drive's error."""
        drive = self.net.drive_error(err)
        self.grads["W_out"] += drive.T @ z
        self.grads["b_out"] += drive.sum(axis=0) * bias
        return drive

    def zero(self):
        for grad in self.grads.values():
            grad[...] = 0


class ForwardReadout(ReadoutGradient):
    """e-prop's order: y_t depends on W_out through zbar_t and on b_out through bbar_t, kept as
    the steps go (and summed for a loss on the mean readout)."""

    def __init__(self, net, batch: int, n: int):
        super().__init__(net)
        if self.grads:
            self.zbar = net.xp.zeros((batch, n), net.dtype)
            self.zbar_sum = net.xp.zeros_like(self.zbar)
            self.bbar = net.xp.zeros(1, net.dtype)  # arrays, updated in place as zbar is
            self.bbar_sum = net.xp.zeros(1, net.dtype)

    def step(self, z, sequence: bool):
        if not self.grads:
            return
        kappa = self.net.kappa
        self.zbar *= kappa
        self.zbar += z
        self.bbar *= kappa
        self.bbar += 1.0
        if sequence:
            self.zbar_sum += self.zbar
            self.bbar_sum += self.bbar

    def add_step(self, err):
        """A per-step loss's share, from err = dL/dy_t."""
        if self.grads:
            self.add(err, self.zbar, self.bbar)

    def add_sequence(self, err, kind, steps: int):
        """A sequence loss's gradient, from err = dL/d(its reduced readout)."""
        if self.grads:
            self.add(err, kind.reduce(self.zbar_sum, self.zbar, steps), kind.reduce(self.bbar_sum, self.bbar, steps))


class BackwardReadout(ReadoutGradient):
    """BPTT's order: the error filtered backward in time, dbar_t = d_t + kappa dbar_{t+1}."""

    def __init__(self, net, batch: int):
        super().__init__(net)
        self.filtered = net.xp.zeros((batch, net.n_out), net.dtype)

    def step(self, dy, z):
        """dL/dz_t of the last layer through the readout, from dL/dy_t of the loss alone (``dy``)
        and z_t, the steps taken last to first; adds the step's share to the gradients."""
        self.filtered = dy + self.net.kappa * self.filtered
        if not self.grads:
            return self.filtered  # the output is z_t itself
        return self.add(self.filtered, z) @ self.net.params["W_out"]
