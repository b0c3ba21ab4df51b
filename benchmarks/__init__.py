"""Speed and memory of symgrad's generated trainers, measured against peers in one run.

Run ``python -m benchmarks [--quick] [--out DIR] [--only NAME ...]``. Each benchmark is a
module with a ``run(size, out)`` function returning a :class:`benchmarks.common.Section`:

    memory      peak memory of one gradient pass against T and N (e-prop flat, BPTT linear)
    speed       time per step of the ALIF/LIF gradient against JAX and PyTorch peers
    alignment   cosine similarity of e-prop and BPTT gradients
    plan        what the trace plan saves against keeping every trace per synapse

The peers (``peers_jax``, ``peers_torch``) implement symgrad's ALIF equations by hand; each is
checked against symgrad's BPTT on a tiny problem before it is timed.
"""
