"""The firing-rate regulariser reg/2 sum_i (rate_i - rate_target)^2, for e-prop and BPTT alike.

rate_i is neuron i's spikes per step and sample over the whole batch; where a batch is split
over MPI ranks, ``rate_scope(sums, batch)`` gives the whole batch's spike sums and size. Its
derivative by every z_t,b,i is reg (rate_i - rate_target) / (steps * whole batch). A slice's
gradient is, like its loss's, its own mean, weighted by its size when the ranks' gradients are
summed, so its coefficient divides by the slice's size instead. BPTT adds the coefficient to
dL/dz_t; e-prop multiplies it by the sum over steps and samples of dz_t/dW (its ``reg_sum``).
"""
from __future__ import annotations


def rate_regulariser(sums: list, steps: int, batch: int, reg: float, rate_target: float,
                     rate_scope=None) -> tuple[float, list]:
    """The regulariser's value and, per layer, its coefficient (n,) dL/dz_t from the layers'
    spike sums (n,) of this batch of ``batch`` samples over ``steps`` steps."""
    whole = batch
    if reg and rate_scope is not None:  # the rate of the whole batch this one is a slice of
        sums, whole = rate_scope(sums, batch)
    value, coefficients = 0.0, []
    for rate_sum in sums:
        excess = rate_sum / (steps * whole) - rate_target
        value += 0.5 * reg * float((excess * excess).sum())
        coefficients.append(reg * excess / (steps * batch))
    return value, coefficients
