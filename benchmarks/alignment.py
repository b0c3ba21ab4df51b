"""How well e-prop's gradient points along BPTT's: cosine similarity, in float64.

1. Along a short training run of a recurrent ALIF network (Adam on e-prop's gradient, the
   randman task when symgrad.data has it, random spikes otherwise), both gradients are
   computed at the same weights before every update.
2. For every built-in model, with and without recurrent weights, at initial weights. Without
   recurrence e-prop is exact (design notes, section 2), so the cosine must be 1 to 1e-9:
   a figure below that is a bug, not an approximation.

The cosine is taken over the hidden layer's parameters only (W_in, W_rec, learnable neuron
parameters): the readout's gradients are exact in any case and would flatter the figure.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symgrad import models
from symgrad.runtime import bptt, eprop
from symgrad.runtime.optim import Adam

from .common import DRIVE, Problem, Section, Target, pyplot, table

NAME = "alignment"
TITLE = "Gradient alignment of e-prop with BPTT"
READOUT = ("W_out", "b_out")
EXACT_TOLERANCE = 1e-9


def cosine(a: dict, b: dict) -> float:
    keys = [k for k in b if k not in READOUT]
    u = np.concatenate([np.ravel(a[k]) for k in keys])
    v = np.concatenate([np.ravel(b[k]) for k in keys])
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def task(quick: bool, batch: int, updates: int, seed: int = 0):
    """Batches (x as (T, B, M), labels) for the training run, and where they came from."""
    samples = batch * updates
    try:
        from symgrad.data import load_task

        data = load_task("randman", seed=seed, samples=samples, test_samples=1,
                         **({"steps": 20, "channels": 12, "n_classes": 4} if quick else {})).train
        x, y, n_classes, source = data.x, data.y, data.n_classes, "randman"
    except ImportError:
        rng = np.random.default_rng(seed)
        n_classes, steps, channels = (4, 20, 12) if quick else (10, 50, 30)
        x = (rng.random((samples, steps, channels)) < 0.05).astype(np.float32)
        y, source = rng.integers(0, n_classes, samples), "random spikes"
    batches = [(np.ascontiguousarray(np.swapaxes(x[i:i + batch], 0, 1), dtype=np.float64), y[i:i + batch])
               for i in range(0, samples, batch)]
    return batches, n_classes, source


def training_run(quick: bool) -> dict:
    batch, updates, hidden = (8, 3, 16) if quick else (32, 40, 100)
    batches, n_classes, source = task(quick, batch, updates)
    steps, _, channels = batches[0][0].shape
    problem = Problem(model="alif", steps=steps, batch=batch, n_in=channels, hidden=hidden,
                      n_out=n_classes, kappa=0.9, dtype="float64", gain=4.0)
    net = problem.network(fresh=True)  # trained below
    optimizer = Adam(lr=0.01, clip=10.0)
    record = {"source": source, "problem": vars(problem), "loss": [], "accuracy": [], "cosine": [],
              "cosine_W_in": [], "cosine_W_rec": [], "spike_rate": []}
    for x, labels in batches:
        fast, reference = eprop(net, x, labels, loss="ce_mean"), bptt(net, x, labels, loss="ce_mean")
        record["loss"].append(fast.loss)
        record["accuracy"].append(float((fast.readout.argmax(1) == labels).mean()))
        record["cosine"].append(cosine(fast.grads, reference.grads))
        for key in ("W_in", "W_rec"):
            record[f"cosine_{key}"].append(cosine({key: fast.grads[key]}, {key: reference.grads[key]}))
        record["spike_rate"].append(fast.spikes[0] / (steps * batch * hidden))
        optimizer.step(net.params, fast.grads)
    return record


def per_model(quick: bool) -> list:
    rows = []
    # Quick: on the NumPy backend, which compiles nothing; the cosine is the same on every
    # backend (each equals NumPy's to 1e-12), and compiling 22 networks' kernels was most of
    # the quick benchmarks' time.
    backend = {"backend": "numpy"} if quick else {}
    for name in models.BUILTIN:
        for recurrent in (False, True):
            problem = Problem(model=name, steps=20 if quick else 50, batch=4, n_in=10,
                              hidden=12 if quick else 32, n_out=4, kappa=0.8, recurrent=recurrent,
                              dtype="float64", rate=0.3, gain=2.0 * DRIVE.get(name, 1.0), seed=2, **backend)
            net = problem.network()
            x, labels = problem.data()
            fast, reference = eprop(net, x, labels), bptt(net, x, labels)
            rows.append({"model": name, "recurrent": recurrent, "cosine": cosine(fast.grads, reference.grads),
                         "spikes": fast.spikes[0]})
    return rows


def run(quick: bool, out: Path) -> Section:
    record, rows = training_run(quick), per_model(quick)
    plot = "alignment.png"
    _plot(record, rows, out / plot)
    exact = [r for r in rows if not r["recurrent"]]
    worst = max(exact, key=lambda r: abs(1 - r["cosine"]))
    targets = [Target(f"largest |1 - cosine| without recurrence ({worst['model']})",
                      abs(1 - worst["cosine"]), EXACT_TOLERANCE)]
    figures = {"training": record, "models": rows}
    return Section(NAME, TITLE, figures, _markdown(record, rows), [plot], targets)


def _markdown(record: dict, rows: list) -> str:
    p = record["problem"]
    cos = record["cosine"]
    picks = sorted({0, len(cos) // 2, len(cos) - 1})
    training = table(["update", "loss", "batch accuracy", "cosine (all)", "cosine W_in", "cosine W_rec",
                      "spike rate"],
                     [[i + 1, f"{record['loss'][i]:.3f}", f"{record['accuracy'][i]:.2f}", f"{cos[i]:.4f}",
                       f"{record['cosine_W_in'][i]:.4f}", f"{record['cosine_W_rec'][i]:.4f}",
                       f"{record['spike_rate'][i]:.3f}"] for i in picks])
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["recurrent"]] = r
    models_table = table(["model", "cosine, no recurrence", "1 - cosine", "cosine, recurrent"],
                         [[m, f"{v[False]['cosine']:.12f}", f"{1 - v[False]['cosine']:.1e}",
                           f"{v[True]['cosine']:.4f}"] for m, v in by_model.items()])
    return f"""Training run: ALIF, {p['hidden']} recurrent neurons, kappa={p['kappa']}, ce_mean loss, Adam
(lr 0.01) on the e-prop gradient, {len(cos)} updates of {p['batch']} samples of {record['source']}
(T={p['steps']}, M={p['n_in']}, {p['n_out']} classes). Cosine over the hidden layer's parameters:
mean {np.mean(cos):.4f}, min {np.min(cos):.4f}.

{training}

Every built-in model at initial weights (per-step CE, kappa=0.8, 30% input spikes):

{models_table}
"""


def _plot(record: dict, rows: list, path: Path):
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    updates = np.arange(1, len(record["cosine"]) + 1)
    for key, label in (("cosine", "all hidden"), ("cosine_W_in", "W_in"), ("cosine_W_rec", "W_rec")):
        left.plot(updates, record[key], marker=".", label=label)
    left.set(xlabel="update", ylabel="cosine(e-prop, BPTT)", title="recurrent ALIF, during training")
    left.legend(fontsize=8)
    names = list(dict.fromkeys(r["model"] for r in rows))
    for offset, recurrent in ((-0.2, False), (0.2, True)):
        values = [next(r["cosine"] for r in rows if r["model"] == m and r["recurrent"] == recurrent)
                  for m in names]
        right.bar(np.arange(len(names)) + offset, values, 0.4,
                  label="recurrent" if recurrent else "no recurrence (exact)")
    right.set_xticks(np.arange(len(names)), names, rotation=45, ha="right")
    right.set(ylabel="cosine(e-prop, BPTT)", title="built-in models", ylim=(min(0, right.get_ylim()[0]), 1.2))
    right.legend(fontsize=8, ncol=2, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
