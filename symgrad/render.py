"""Rendering a model through every backend's template, from one analysis.

``generate_code(model)`` analyses the model once, builds the trace plan and the kernel
descriptions (the blueprint), and renders each backend's template with the names its printer
gives: the result, a :class:`Generated` record, carries the text of every backend, the plan
summary and the kernels, and the runtime builds its layers from it. Jinja runs with
``StrictUndefined``, so a template that asks for something its context lacks fails loudly.
"""
from __future__ import annotations

import importlib.resources
import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

import jinja2

from . import __version__, models, store
from .analysis import Analysis
from .kernels import Blueprint, Kernel, blueprint
from .layouts import DENSE, LAYOUTS, Layout
from .model import NeuronModel
from .names import Names
from .plan import PlanSummary, plans_of
from .printers import TARGETS, WHOLE_PASS
from .report import header

TEMPLATE_SUFFIX = ".j2"
# generator backend: (template under templates/<backend>/, file written under generated/<model>/)
BACKENDS = {name: (t.template, t.filename) for name, t in TARGETS.items()}


class GenerationError(RuntimeError):
    """symgrad produced code that does not compile: a bug in symgrad, named with the model."""


def template_dir() -> Path:
    """``templates/`` of a checkout, or the copy shipped inside the installed package."""
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    return Path(str(importlib.resources.files("symgrad") / "templates"))


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Generated:
    """Everything generated for one model from one analysis."""

    model: NeuronModel
    dense: bool
    plans: tuple  # PlanSummary of each synaptic input, in declaration order
    kernels: tuple  # Kernel descriptions, in the order the CUDA source defines them
    texts: dict  # backend name -> file text
    names: Names  # every identifier the files use, allocated once
    layout: Layout = DENSE  # how the layers' synapses are laid out (dense or sparse rows)

    @property
    def plan(self) -> PlanSummary:
        """The first input's plan summary (the only one of a one-input model)."""
        return self.plans[0]

    def filename(self, backend: str) -> str:
        return filename(backend, self.layout)

    def kernel(self, kind: str, port: str | None = None) -> Kernel | None:
        """The kernel of this kind (of the input ``port``, for a per-input kernel), if any."""
        return next((k for k in self.kernels if k.kind == kind and k.port == port), None)


def filename(backend: str, layout: Layout = DENSE) -> str:
    """The file ``backend`` writes for a model whose layers are laid out as ``layout``:
    ``numba_layer.py``, ``numba_layer_csr.py``."""
    stem, dot, extension = TARGETS[backend].filename.rpartition(".")
    return f"{stem}{layout.suffix}{dot}{extension}"


def generate_code(model: NeuronModel, dense: bool = False, backends=tuple(TARGETS),
                  layout: Layout = DENSE) -> Generated:
    """Analyse ``model`` once and render it for ``backends``; ``dense`` keeps every trace per
    synapse; ``layout``: which synapses the layers' kernels walk (every pair, or sparse rows)."""
    analysis = Analysis(model)
    plans = plans_of(analysis, dense)
    design = blueprint(analysis, plans, layout)
    texts = {name: _render(design, name) for name in backends}
    return Generated(model, dense, tuple(replace(plan.summary(), layout=layout) for plan in plans),
                     tuple(design.kernels), texts, analysis.naming, layout)


def _render(design: Blueprint, backend: str) -> str:
    target = TARGETS[backend]
    model = design.model
    values = {"version": __version__, "model": model, "doc": (model.doc or "").strip(),
              "regenerate": regenerate(model, backend, design.layout), "header": header(design.analysis, design.plans, design.layout),
              **target.context(design)}
    text = environment().get_template(f"{backend}/{target.template}{TEMPLATE_SUFFIX}").render(values)
    if target.python:
        try:
            compile(text, f"<{model.name}/{filename(backend, design.layout)}>", "exec")
        except SyntaxError as err:
            raise GenerationError(
                f"symgrad generated invalid Python for model {model.name!r} ({filename(backend, design.layout)}, "
                f"line {err.lineno}: {err.msg}); this is a bug in symgrad, please report it "
                f"with the model") from None
    return text


def driver(shape) -> str:
    """The Numba driver of e-prop's whole pass for a network of this shape (``symgrad.passes``)."""
    from . import passes

    return environment().get_template(f"{WHOLE_PASS}/{passes.TEMPLATE}{TEMPLATE_SUFFIX}").render(
        passes.print_driver(shape))


def bptt_driver(shape) -> str:
    """The Numba driver of BPTT's whole pass for a network of this shape (``symgrad.bptt_pass``)."""
    from . import bptt_pass

    return environment().get_template(f"{WHOLE_PASS}/{bptt_pass.TEMPLATE}{TEMPLATE_SUFFIX}").render(
        bptt_pass.print_driver(shape))


def regenerate(model: NeuronModel, backend: str, layout: Layout = DENSE) -> str:
    """How to write ``backend``'s file of ``model`` (for layers laid out as ``layout``) again, as
    the file's header says it."""
    default = TARGETS[backend].default  # the file written when no backend is named
    option = ("" if default else f" --backend {backend}") + (f" --layout {layout.name}" if layout is not DENSE else "")
    if model.source_file:  # a model file, named with the model (it may hold several), or a NIR graph
        spec = _shown(model.source_file) + (f":{model.name}" if model.source_file.endswith(".py") else "")
        return f"`symgrad generate {shlex.quote(spec)}{option}`"
    if model.name in models.BUILTIN and model == models.builtin(model.name):
        return f"`symgrad generate {model.name}{option}`"
    arguments = ("" if default else f', backends=["{backend}"]') + (f', layouts=["{layout.name}"]'
                                                                    if layout is not DENSE else "")
    return f"`symgrad.render.generate(model{arguments})`, where the model is built,"


def _shown(path: str) -> str:
    """``path`` relative to the current folder where it lies below it, as it was likely typed."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def render(model: NeuronModel, backend: str = "numpy", dense: bool = False, layout: Layout = DENSE) -> str:
    """The generated file of ``model`` for ``backend``; ``dense`` forces every trace per synapse."""
    return generate_code(model, dense, (backend,), layout).texts[backend]


def same_code(a: NeuronModel, b: NeuronModel) -> bool:
    """Whether models ``a`` and ``b`` generate the same code, whichever file each came from (every
    backend renders the same analysis, so NumPy's module stands for them all)."""
    return render(replace(a, source_file=None)) == render(replace(b, source_file=None))


def cuda_kernels(model: NeuronModel, dense: bool = False) -> list[Kernel]:
    """The kernels that the generated .cu of ``model`` defines, in order."""
    return [k for k in generate_code(model, dense, ()).kernels if not k.cpu_only]


def files(model: NeuronModel, out_dir: str | Path = "generated", backends=("numpy",), layouts=("dense",)) -> dict:
    """{path under ``out_dir/<model>/``: text} of the generated files of ``model``, unwritten: each
    backend's file for each of ``layouts`` (by name: "dense", and "csr" for sparse layers, whose
    files end in ``_csr``); with the dense Numba kernels, the whole-pass driver of the network
    ``symgrad train`` builds by default, e-prop's and BPTT's."""
    from . import bptt_pass, passes

    found = {}
    for name in dict.fromkeys(layouts):
        code = generate_code(model, backends=tuple(dict.fromkeys(backends)), layout=LAYOUTS[name])
        found.update({Path(out_dir) / model.name / code.filename(b): code.texts[b] for b in code.texts})
        if WHOLE_PASS in code.texts and code.layout is DENSE:
            found[Path(out_dir) / model.name / passes.FILENAME] = driver(passes.default_shape(code))
            found[Path(out_dir) / model.name / bptt_pass.FILENAME] = bptt_driver(passes.default_shape(code))
    return found


def generate(model: NeuronModel, out_dir: str | Path = "generated", backends=("numpy",), layouts=("dense",)) -> list[Path]:
    """Write the generated files of ``model`` under ``out_dir/<model>/``; return their paths."""
    return [store.write_if_changed(path, text) for path, text in files(model, out_dir, backends, layouts).items()]
