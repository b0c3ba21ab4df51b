"""Every identifier of a model's generated code, allocated in one table.

The rule, applied to every backend alike:

- The model's own names (its states, parameters and inputs) appear verbatim. A name that cannot
  be used is refused when the model is declared (``user_name_problem``): one that begins with
  an underscore or holds a double one (spellings this table keeps for itself), a keyword of
  Python or C++, or a name the generated code takes from its languages and libraries
  (``np``, ``range``, ``exp``, the spike and surrogate helpers, ...).
- Every other identifier is symgrad's own and is allocated here from a *family* and the model
  names it is about: ``eps_v`` is the trace of state v, ``trace_a_b_c`` the argument holding the
  trace of parameter a on state b_c. Each gets its readable spelling (the family's pattern,
  parts joined by "_") when that is unique in the model, and otherwise its reserved spelling:
  the family's stem and the parts joined by "__" (``trace_param__a__b_c``), or, for one of the
  few plain words the code declares beside the model's names (``n``, ``z``, ``bi``, ...), the word
  behind an underscore (``_n``).

Model names hold no "__" and never begin with "_", so a reserved spelling is never a model name,
and it reads back into its family and parts alone: two reserved spellings cannot meet. A clash
can only fall back to a reserved spelling, never produce wrong code; the table checks that every
spelling is unique anyway, and a failure there is a bug in symgrad.

Kernels other than the neuron step and the fixed entries never name a model symbol bare, so
their own plain words (``KERNEL_WORDS``: ``batch``, ``post``, ``elig``, ...) are fixed; the table
only keeps composed names off them.
"""
from __future__ import annotations

import functools
import itertools
import keyword
from dataclasses import dataclass

# Words the neuron step and the fixed entries declare beside the model's names (arguments,
# loop indices, the output): allocated, so that a state named ``n`` or ``z`` moves them aside.
MODEL_WORDS = ("z", "size", "n", "bi", "neuron", "out_z", "s", "p", "real")
# Plain words of the other kernels, which declare no model name: fixed.
KERNEL_WORDS = frozenset("""
    batch n n_pre size u L kappa ebar seq_sum seq_weight grad reg_sum step last pend post sample pre
    u_j L_i e elig held owed skipped kappa_skipped bi bj bij syn grad_ij reg_ij neuron product scratch
    weight ones gz grad_z
""".split())

# The target languages' own words: a model name may not be one.
_CPP_WORDS = frozenset("""
    auto bool break case catch char class const constexpr continue default delete do double else
    enum explicit extern false float for friend goto if inline int long mutable namespace new
    nullptr operator private protected public register return short signed sizeof static struct
    switch template this throw true try typedef typename union unsigned using virtual void
    volatile while and or not xor size_t threadIdx blockIdx blockDim gridDim warpSize
    __restrict__ __global__ __device__ __forceinline__
""".split())
# What the generated Python calls by name: modules, decorators and the builtins it uses.
_PYTHON_NAMES = frozenset("np math numba njit prange range self".split())


@dataclass(frozen=True)
class Family:
    """A kind of generated identifier: ``pattern`` with one ``{}`` per part gives its readable
    spelling; ``stem`` (unique among families) begins its reserved one."""

    pattern: str
    stem: str

    def readable(self, parts: tuple) -> str:
        return self.pattern.format(*parts)

    def reserved(self, parts: tuple) -> str:
        """The stem and the parts joined by "__"; a family without parts (a one-input model's
        ``current``, ``settle``, ...), the stem behind an underscore, as the plain words'."""
        return "__".join((self.stem,) + parts) if parts else "_" + self.stem


# Per state s, parameter p, Jacobian entry e, input x.
NEW = Family("{}_new", "new")  # s_t in the neuron step
STATE_ARG, NEW_STATE_ARG = Family("s_{}", "s"), Family("s_{}_new", "s_new")  # kernel arguments
PARAM_ARG = Family("p_{}", "p")
DYNAMIC_ARG, FIXED_ARG = Family("J_{}", "J"), Family("K_{}", "K")  # arrays of entry e
TRACE, TRACE_NEW = Family("eps_{}", "eps"), Family("eps_{}_new", "eps_new")  # eps_s in a kernel
TRACE_ARG, OLD = Family("trace_{}", "trace"), Family("old_{}", "old")  # its array; a saved copy
DECAY, CATCH = Family("decay_{}", "decay"), Family("catch_{}", "catch")  # at rest; over skipped steps
ADJOINT = Family("g_{}", "g")  # dL/ds_t of a state s, dL/dI_t of an input I
ADJOINT_NEW, ADJOINT_ARG = Family("g_{}_new", "g_new"), Family("adj_{}", "adj")  # g_s,t from g_s,t+1; its array
PARAM_GRADIENT = Family("grad_{}", "grad_param")  # dL/dp at one step, per sample and neuron
PARAM_TRACE = Family("eps_{}_{}", "eps_param")  # eps^p_s in a kernel
PARAM_TRACE_NEW = Family("eps_{}_{}_new", "eps_param_new")
PARAM_TRACE_ARG = Family("trace_{}_{}", "trace_param")
PARAM_TRACE_ATTRIBUTE = Family("{}_{}", "param")  # the NumPy module's ParamTraces attribute
PARAM_ELIGIBILITY = Family("e_{}", "e")  # e^p_t
CURRENT = Family("current_{}", "current")  # the neuron step's argument for input x
ENTRY = {
    "D": Family("D_{}_{}", "D"), "c": Family("c_{}", "c"), "c_of": Family("c_{}_{}", "c"),
    "h": Family("h_{}", "h"), "q": Family("q_{}_{}", "q"), "dz": Family("dz_{}", "dz"),
}
# What a model with several inputs has once per input, named after it; a one-input model's one.
PER_INPUT = ("Traces", "input_gain", "synapse_step", "presynaptic_step", "synapse_events", "settle",
             "active_rows")


class NamingError(RuntimeError):
    """Two generated identifiers of one model are spelled alike: a bug in symgrad."""


def user_name_problem(name: str) -> str | None:
    """Why a model may not name a state, parameter or input ``name``, in one line; None if it may."""
    if not name.isidentifier():
        return f"name {name!r} is not an identifier: the generated code declares a variable of it"
    if name.startswith("_") or "__" in name:
        return (f"name {name!r} begins with an underscore or holds a double one: generated code keeps "
                "those spellings for its own names; rename it")
    if keyword.iskeyword(name) or name in _CPP_WORDS:
        return f"name {name!r} is a {'Python' if keyword.iskeyword(name) else 'C++'} keyword; rename it"
    if name in target_names():
        return (f"name {name!r} is one the generated code takes from its languages and libraries "
                "(a module, builtin, math function or spike helper); rename it")
    return None


@functools.cache
def target_names() -> frozenset:
    """What the generated code calls by name from its languages, libraries and helpers."""
    from . import printing, surrogates

    helpers = {cls.__name__ for cls in vars(surrogates).values()
               if isinstance(cls, type) and issubclass(cls, surrogates.Pseudo) and cls is not surrogates.Pseudo}
    python = {spelling.split(".")[-1] for spelling, _ in printing.FUNCTIONS.values()}
    return frozenset(_PYTHON_NAMES | {"spike"} | helpers | python | set(printing.cuda_function_names()))


class Names:
    """The identifiers of ``model``'s generated code. Ask, never compose:

        names.of(TRACE, "v")            "eps_v"
        names.entry("D", "a", "v")      "D_a_v"
        names.word("n")                 "n", or "_n" where the model names something n
        names.per_input("Traces", "I_e")  "Traces_I_e" (a model with several inputs), "Traces"
    """

    def __init__(self, model):
        self.model = model
        states, params, inputs = model.state_names, model.param_names, model.input_names
        self.user = set(states) | set(params) | set(inputs)
        learnable = [p.name for p in model.learnable]
        several = len(inputs) > 1
        wanted = [(f, (s,)) for s in states for f in (NEW, STATE_ARG, NEW_STATE_ARG, TRACE, TRACE_NEW,
                                                      TRACE_ARG, OLD, DECAY, CATCH, ADJOINT, ADJOINT_NEW,
                                                      ADJOINT_ARG)]
        wanted += [(PARAM_ARG, (p,)) for p in params]
        wanted += [(f, (x,)) for x in inputs for f in (ADJOINT, ADJOINT_ARG)]
        wanted += [(PARAM_GRADIENT, (p,)) for p in learnable]
        wanted += [(f, (p, s)) for p in learnable for s in states
                   for f in (PARAM_TRACE, PARAM_TRACE_NEW, PARAM_TRACE_ARG, PARAM_TRACE_ATTRIBUTE)]
        wanted += [(PARAM_ELIGIBILITY, (p,)) for p in learnable]
        wanted += [(ENTRY["D"], (a, b)) for a in states for b in states]
        wanted += [(ENTRY["c_of"] if several else ENTRY["c"], (s, x) if several else (s,))
                   for x in inputs for s in states]
        wanted += [(ENTRY["h"], (s,)) for s in states]
        wanted += [(ENTRY["q"], (p, s)) for p in learnable for s in states]
        wanted += [(ENTRY["dz"], (p,)) for p in learnable]
        per_input = [Family(stem + "_{}", stem) if several else Family(stem, stem) for stem in PER_INPUT]
        per_input.append(CURRENT if several else Family("current", "current"))
        wanted += [(f, (x,) if several else ()) for f in per_input for x in inputs]
        self._spelled = self._allocate(wanted, set())
        # the arrays holding each entry, named after it (as allocated just above)
        entries = [self._spelled[key] for key in wanted if key[0] in ENTRY.values()]
        self._spelled |= self._allocate([(f, (e,)) for e in entries for f in (DYNAMIC_ARG, FIXED_ARG)],
                                        set(self._spelled.values()))
        self._words = {w: f"_{w}" if w in self.user else w for w in MODEL_WORDS}
        self._several = several
        self._check()

    def _allocate(self, wanted: list, allocated: set) -> dict:
        """Each (family, parts) its readable spelling, or its reserved one where that is not
        unique among ``wanted`` or is taken by a model name, a word or an ``allocated`` name."""
        readable = {(f, parts): f.readable(parts) for f, parts in wanted}
        counts: dict = {}
        for spelling in readable.values():
            counts[spelling] = counts.get(spelling, 0) + 1
        taken = self.user | set(MODEL_WORDS) | KERNEL_WORDS | allocated
        return {key: (key[0].reserved(key[1]) if counts[spelling] > 1 or spelling in taken else spelling)
                for key, spelling in readable.items()}

    def _check(self) -> None:
        spellings = list(self._spelled.values()) + list(self._words.values()) + sorted(self.user)
        repeated = {s for s in spellings if spellings.count(s) > 1}
        kernel = set(self._spelled.values()) & KERNEL_WORDS
        if repeated or kernel:
            raise NamingError(f"model {self.model.name!r}: the generated identifier(s) "
                              f"{', '.join(sorted(repeated | kernel))} are spelled twice; this is a bug in "
                              "symgrad, please report it with the model")

    # -- asking ----------------------------------------------------------------------------
    def of(self, family: Family, *parts: str) -> str:
        return self._spelled[family, parts]

    def entry(self, kind: str, *parts: str) -> str:
        """A Jacobian entry's name: ("D", k, j), ("c", k[, input]), ("h", k), ("q", p, k), ("dz", p)."""
        if kind == "c":
            kind, parts = ("c_of", parts) if self._several else ("c", parts[:1])
        return self.of(ENTRY[kind], *parts)

    def per_input(self, stem: str, input_name: str) -> str:
        """The name of input ``input_name``'s ``stem`` (a class, function or kernel: PER_INPUT)."""
        family = next(f for f, _ in self._spelled if f.stem == stem)
        return self.of(family, *((input_name,) if self._several else ()))

    def current(self, input_name: str) -> str:
        """The neuron step kernel's argument carrying input ``input_name``'s current."""
        return self.per_input("current", input_name)

    def word(self, word: str) -> str:
        """One of MODEL_WORDS as the neuron step and fixed entries spell it."""
        return self._words[word]

    @property
    def words(self) -> dict:
        return dict(self._words)

    def temporaries(self):
        """x0, x1, ...: names for shared subexpressions that no other identifier has."""
        taken = set(self._spelled.values()) | set(self._words.values()) | self.user
        return (name for name in (f"x{i}" for i in itertools.count()) if name not in taken)
