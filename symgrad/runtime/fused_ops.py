"""The numerical steps of e-prop's whole-pass driver that no model changes (``symgrad.passes``).

Each is what runtime/eprop.py's loop does with NumPy between the kernels, written as a loop
Numba compiles into the driver, in place and without allocating: the synaptic input, the
readout and its gradients, the per-step losses and the learning signal. Spikes are mostly
zero, so the products with them skip the zeros (exact: a skipped term is 0). A sparse
projection's products walk its stored synapses only: its rows (``layouts.CSR``), or the same
synapses column by column where a pass over the nonzero inputs needs them so.
"""
from __future__ import annotations

import math

import numpy as np

from numba import njit, prange


@njit(parallel=True, cache=True)
def project(I, x, W_T, accumulate):
    """I = x W^T (or I += x W^T): (batch, n) from x (batch, m) and W given transposed, W_T (m, n):
    a row of W_T per nonzero input, so that spikes cost what they are (and summed in the order
    of the inputs)."""
    batch, n = I.shape
    for b in prange(batch):
        if not accumulate:
            for i in range(n):
                I[b, i] = 0.0
        for j in range(x.shape[1]):
            value = x[b, j]
            if value != 0:
                for i in range(n):
                    I[b, i] += value * W_T[j, i]


@njit(parallel=True, cache=True)
def project_sparse(I, x, W_by_pre, pre_start, post, accumulate):
    """``project`` for a sparse W given column by column: W_by_pre (nnz,) its weights, column
    j's being pre_start[j] .. pre_start[j + 1] - 1, post their post neurons: the synapses of
    each nonzero input (in the order of the inputs, as in ``project``)."""
    batch, n = I.shape
    for b in prange(batch):
        if not accumulate:
            for i in range(n):
                I[b, i] = 0.0
        for j in range(x.shape[1]):
            value = x[b, j]
            if value != 0:
                for k in range(pre_start[j], pre_start[j + 1]):
                    I[b, post[k]] += value * W_by_pre[k]


@njit(cache=True)
def copy(target, source):
    """target[...] = source, both (rows, columns)."""
    for b in range(target.shape[0]):
        for i in range(target.shape[1]):
            target[b, i] = source[b, i]


@njit(cache=True)
def add(target, source):
    """target += source, both (rows, columns)."""
    for b in range(target.shape[0]):
        for i in range(target.shape[1]):
            target[b, i] += source[b, i]


@njit(cache=True)
def fill(target, value):
    """Every element of target (rows, columns) = value."""
    for b in range(target.shape[0]):
        for i in range(target.shape[1]):
            target[b, i] = value


@njit(cache=True)
def copy_columns(target, start, source):
    """target[:, start:start + width] = source (rows, width): a part of u_t."""
    for b in range(source.shape[0]):
        for j in range(source.shape[1]):
            target[b, start + j] = source[b, j]


@njit(cache=True)
def fill_column(target, column, value):
    for b in range(target.shape[0]):
        target[b, column] = value


@njit(cache=True)
def add_bias(I, bias):
    for b in range(I.shape[0]):
        for i in range(I.shape[1]):
            I[b, i] += bias[i]


@njit(cache=True)
def add_column_sums(total, z):
    """total += z summed over the batch."""
    for b in range(z.shape[0]):
        for i in range(z.shape[1]):
            total[i] += z[b, i]


@njit(cache=True)
def read(y, z, W_out, b_out, gain, offset, kappa, drive):
    """y_t = kappa y_t-1 + gain (W_out z_t + b_out) + offset, in place; gain and offset may be
    None; drive (K,) is scratch. A column of W_out per nonzero output, as in ``project``."""
    for b in range(y.shape[0]):
        for k in range(y.shape[1]):
            drive[k] = b_out[k]
        for i in range(z.shape[1]):
            value = z[b, i]
            if value != 0:
                for k in range(y.shape[1]):
                    drive[k] += value * W_out[k, i]
        for k in range(y.shape[1]):
            if gain is not None:
                drive[k] *= gain[k]
            if offset is not None:
                drive[k] += offset[k]
            y[b, k] = kappa * y[b, k] + drive[k] if kappa != 0 else drive[k]


@njit(cache=True)
def filter_output(zbar, bbar, zbar_sum, bbar_sum, z, kappa):
    """What the readout's gradients need of the last layer's output: zbar_t = kappa zbar_t-1 + z_t
    and bbar_t = kappa bbar_t-1 + 1, summed over the steps where zbar_sum is given."""
    for b in range(z.shape[0]):
        for i in range(z.shape[1]):
            zbar[b, i] = kappa * zbar[b, i] + z[b, i]
    bbar[0] = kappa * bbar[0] + 1.0
    if zbar_sum is not None:
        for b in range(z.shape[0]):
            for i in range(z.shape[1]):
                zbar_sum[b, i] += zbar[b, i]
        bbar_sum[0] += bbar[0]


@njit(cache=True)
def cross_entropy(y, labels, err):
    """The batch's mean cross-entropy of softmax(y) against the labels; err = dL/dy."""
    batch, classes = y.shape
    loss = 0.0
    for b in range(batch):
        top = y[b, 0]
        for k in range(1, classes):
            top = max(top, y[b, k])
        total = 0.0
        for k in range(classes):
            err[b, k] = math.exp(y[b, k] - top)
            total += err[b, k]
        for k in range(classes):
            err[b, k] /= total
        loss -= math.log(max(err[b, labels[b]], 1e-30))
        err[b, labels[b]] -= 1.0
        for k in range(classes):
            err[b, k] /= batch
    return loss / batch


@njit(cache=True)
def squared_error(y, target, err):
    """The batch's mean of (1/2)|y - target|^2; err = dL/dy."""
    batch = y.shape[0]
    loss = 0.0
    for b in range(batch):
        for k in range(y.shape[1]):
            diff = y[b, k] - target[b, k]
            loss += diff * diff
            err[b, k] = diff / batch
    return 0.5 * loss / batch


@njit(cache=True)
def scale_by(err, gain):
    """err *= gain per output, where there is a gain."""
    if gain is not None:
        for b in range(err.shape[0]):
            for k in range(err.shape[1]):
                err[b, k] *= gain[k]


@njit(cache=True)
def add_readout_gradients(g_W_out, g_b_out, drive, zbar, bbar):
    """dL/dW_out += drive^T zbar_t, dL/db_out += bbar_t sum_b drive."""
    for k in range(drive.shape[1]):
        column = 0.0
        for b in range(drive.shape[0]):
            column += drive[b, k]
            for i in range(zbar.shape[1]):
                g_W_out[k, i] += drive[b, k] * zbar[b, i]
        g_b_out[k] += column * bbar


@njit(cache=True)
def learning_signal(L, drive, feedback):
    """L_t = drive W_fb: (batch, n) from drive (batch, K) and W_fb (K, n), a row of W_fb at a
    time (along its rows, which memory holds together)."""
    for b in range(L.shape[0]):
        for i in range(L.shape[1]):
            L[b, i] = 0.0
        for k in range(drive.shape[1]):
            error = drive[b, k]
            for i in range(L.shape[1]):
                L[b, i] += error * feedback[k, i]


@njit(parallel=True, cache=True)
def add_products(target, L, h, eps):
    """target += (L h)^T eps: (post, pre) from L and h (batch, post) and eps (batch, pre);
    L None: ones (the regulariser's signal); h None: an entry equal to 1."""
    for i in prange(target.shape[0]):
        for b in range(eps.shape[0]):
            signal = 1.0 if L is None else L[b, i]
            if h is not None:
                signal *= h[b, i]
            if signal != 0:
                for j in range(eps.shape[1]):
                    target[i, j] += signal * eps[b, j]


@njit(parallel=True, cache=True)
def add_products_at(target, L, h, eps, row_start, col):
    """``add_products`` at the synapses of sparse rows: target (nnz,) += sum_b (L h)_b,post
    eps_b,col[k] over post neuron post's synapses k = row_start[post] .. row_start[post + 1] - 1."""
    for post in prange(row_start.shape[0] - 1):
        for b in range(eps.shape[0]):
            signal = 1.0 if L is None else L[b, post]
            if h is not None:
                signal *= h[b, post]
            if signal != 0:
                for k in range(row_start[post], row_start[post + 1]):
                    target[k] += signal * eps[b, col[k]]


@njit(cache=True)
def param_sums(e, L, kappa, w, pbar, pgrad, psum, preg):
    """A learnable parameter's sums from its eligibility e^p_t (batch, n): the filtered one
    pbar (where kept), the gradient sum_b L elig, the sequence sum w elig and the regulariser's
    sum_b e^p, each where its array (or L) is given; elig is pbar where kept, else e^p_t."""
    for b in range(e.shape[0]):
        for i in range(e.shape[1]):
            elig = e[b, i]
            if pbar is not None:
                elig = kappa * pbar[b, i] + elig
                pbar[b, i] = elig
            if L is not None:
                pgrad[i] += L[b, i] * elig
            if psum is not None:
                psum[b, i] += w * elig
            if preg is not None:
                preg[i] += e[b, i]


@njit(cache=True)
def pass_down(below, L, gain, W_in, accumulate):
    """The learning signal of the layer below: below (+)= (L dz/dI) W_in, (batch, m) from L and
    gain (batch, n) and W_in (n, m); gain None: L itself (BPTT's dL/dI through W_in or W_rec)."""
    for b in range(below.shape[0]):
        if not accumulate:
            for j in range(below.shape[1]):
                below[b, j] = 0.0
        for i in range(L.shape[1]):
            signal = L[b, i] if gain is None else L[b, i] * gain[b, i]
            if signal != 0:
                for j in range(below.shape[1]):
                    below[b, j] += signal * W_in[i, j]


@njit(cache=True)
def pass_down_sparse(below, L, gain, W_in, row_start, col, accumulate):
    """``pass_down`` through a sparse W_in: its weights (nnz,) in sparse rows, post neuron i's
    being row_start[i] .. row_start[i + 1] - 1 with presynaptic columns col."""
    for b in range(below.shape[0]):
        if not accumulate:
            for j in range(below.shape[1]):
                below[b, j] = 0.0
        for i in range(L.shape[1]):
            signal = L[b, i] if gain is None else L[b, i] * gain[b, i]
            if signal != 0:
                for k in range(row_start[i], row_start[i + 1]):
                    below[b, col[k]] += signal * W_in[k]


@njit(cache=True)
def read_back(gz, filtered, dy, z, W_out, gain, kappa, drive, g_W_out, g_b_out):
    """BPTT through the readout at step t: filtered = dbar_t = dy_t + kappa dbar_t+1 (batch, K);
    with readout weights, drive = gain dbar_t, dL/dW_out += drive^T z_t, dL/db_out += sum_b
    drive and gz = drive W_out (batch, n), BLAS's product (a loop over K, the inner index, is
    four times slower); without (W_out None), gz = dbar_t."""
    for b in range(dy.shape[0]):
        for k in range(dy.shape[1]):
            filtered[b, k] = dy[b, k] + kappa * filtered[b, k]
    if W_out is None:
        copy(gz, filtered)
        return
    for b in range(dy.shape[0]):
        for k in range(dy.shape[1]):
            drive[b, k] = filtered[b, k] if gain is None else filtered[b, k] * gain[k]
            g_b_out[k] += drive[b, k]
        for i in range(z.shape[1]):
            if z[b, i] != 0:
                for k in range(dy.shape[1]):
                    g_W_out[k, i] += drive[b, k] * z[b, i]
    np.dot(drive, W_out, gz)


@njit(cache=True)
def add_back(gz, back, rate_grad):
    """gz += back + rate_grad: what reaches z_t through W_rec at t+1 (batch, n) and the rate
    regulariser's (n), each where given."""
    for b in range(gz.shape[0]):
        for i in range(gz.shape[1]):
            if back is not None:
                gz[b, i] += back[b, i]
            if rate_grad is not None:
                gz[b, i] += rate_grad[i]


@njit(cache=True)
def pass_back(into, g, W, accumulate):
    """BPTT's into (+)= g W: (batch, m) from dL/dI g (batch, n) and W (n, m), both dense: every
    element of g is nonzero, so BLAS's product, where nothing is added to ``into``."""
    if accumulate:
        pass_down(into, g, None, W, True)
    else:
        np.dot(g, W, into)


@njit(cache=True)
def add_outer(target_T, u, g):
    """target_T += u^T g: (pre, n) from u (batch, pre) and g (batch, n), a row of target_T per
    nonzero input, so that spikes cost what they are (BPTT's weight gradient, step by step)."""
    for b in range(u.shape[0]):
        for j in range(u.shape[1]):
            value = u[b, j]
            if value != 0:
                for i in range(g.shape[1]):
                    target_T[j, i] += value * g[b, i]
