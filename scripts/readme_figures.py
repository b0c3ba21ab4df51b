"""Rerun the README's figures and print each beside the value the README states.

Every accuracy the README quotes for a command a reader can run is a Claim here: the commands
that produce it, and the README text that states it (a pattern whose groups are the figures).
Accuracies must match the README to the digit it prints; times are shown for information,
since they depend on the machine and on what else runs on it.

    python scripts/readme_figures.py --data ../shared/data/fsdd            # every claim
    python scripts/readme_figures.py --only randman_seed0 randman_seeds    # some of them
    python scripts/readme_figures.py --data ../shared/data/fsdd --update   # write the new figures in

Exit code 0 when every accuracy matches (or was updated), 1 when one differs. Accuracies do
not depend on the machine's speed, but float32 sums do depend on their order, which the number
of worker threads sets: every run here pins ``--workers 2`` (the default on a 2-core machine),
as the README says.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
WORKERS = "2"


@dataclass(frozen=True)
class Run:
    """One command: ``symgrad ARGS`` (under mpiexec with ``ranks`` > 1). ``{data}`` stands for
    the FSDD folder and ``{runs}`` for this invocation's scratch folder."""

    args: str
    ranks: int = 1

    def argv(self, data: str, runs: Path) -> list[str]:
        args = self.args.format(data=data, runs=runs).split()
        symgrad = [sys.executable, "-m", "symgrad.cli"]
        if self.ranks > 1:
            return [str(MPIEXEC), "-n", str(self.ranks)] + symgrad + args
        return symgrad + args


@dataclass(frozen=True)
class Claim:
    """Figures the README states, and the runs that produce them.

    readme: a pattern matching exactly one place in the README; its groups are the figures.
    figures: the run outputs' figures, as the README prints them, in the groups' order.
    timed: names of groups that are times (shown, never compared).
    """

    name: str
    runs: tuple
    readme: str
    figures: object  # (list of Output) -> tuple of str
    timed: tuple = ()
    needs_data: bool = False
    slow: bool = False


@dataclass
class Output:
    """What one run left: its stdout, its run folder's final metrics, its wall time."""

    stdout: str
    seconds: float
    metrics: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.metrics["test_acc"][-1]

    def printed(self, pattern: str) -> str:
        found = re.search(pattern, self.stdout)
        if not found:
            raise RuntimeError(f"the command's output has no {pattern!r}:\n{self.stdout}")
        return found.group(1)


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def span(values) -> str:
    """'58.0% to 60.5%', as the README states a range over seeds."""
    return f"{percent(min(values))} to {percent(max(values))}"


def whole_span(values) -> str:
    """'58% to 60%': a range over seeds in whole percent."""
    return f"{round(100 * min(values))}% to {round(100 * max(values))}%"


def seconds(value: float) -> str:
    return f"{value:.0f} s"


def train(args: str, out: str, ranks: int = 1) -> Run:
    return Run(f"train {args} --workers {WORKERS} --quiet --out {{runs}}/{out}", ranks)


FSDD = "alif --task fsdd --data {data}"
SPEAKERS = ("george", "jackson", "nicolas", "theo", "yweweler")
# (neurons, connectivity) of the sparse FSDD table: connectivity at N=128, and the dense layer's
# synapse budget spent on a wider sparse one
SPARSE = ((128, 1), (128, 0.3), (128, 0.1), (128, 0.03), (400, 0.1))

CLAIMS = [
    Claim("randman_seed0", (train("alif --seed 0", "randman0"),),
          r"\(`--seed S`; (\d+\.\d%) with the default seed 0\)", lambda o: (percent(o[0].accuracy),)),
    Claim("randman_seeds", tuple(train(f"alif --seed {s}", f"randman{s}") for s in (0, 1, 2)),
          r"on a 2-core CPU: (\d+% to \d+%) over seeds 0, 1\nand 2",
          lambda o: (whole_span([r.accuracy for r in o]),)),
    Claim("fsdd_seed0", (train(f"{FSDD} --seed 0", "fsdd0"),),
          r"over\nseeds 0, 1 and 2 \((\d+\.\d%) with seed 0\)", lambda o: (percent(o[0].accuracy),),
          needs_data=True),
    Claim("fsdd_seeds", tuple(train(f"{FSDD} --seed {s}", f"fsdd{s}") for s in (0, 1, 2)),
          r"this reached (\d+\.\d% to \d+\.\d%) on the official test split",
          lambda o: (span([r.accuracy for r in o]),), needs_data=True),
    Claim("fsdd_evaluate", (train(f"{FSDD} --seed 0", "fsdd0"), Run("evaluate {runs}/fsdd0 --data {data}")),
          r"on all 2,500 recordings: (\d+\.\d+%)",
          lambda o: (o[1].printed(r"fsdd: (\d+\.\d+%)"),), needs_data=True),
    Claim("fsdd_bptt", (train(f"{FSDD} --seed 0 --rule bptt", "fsdd0-bptt"),),
          r"`--rule bptt` with seed 0 reached (\d+\.\d%)", lambda o: (percent(o[0].accuracy),), needs_data=True),
    Claim("fsdd_numpy", (train(f"{FSDD} --seed 0 --backend numpy", "fsdd0-numpy"),),
          r"`--backend numpy`, took [^.]*? for (\d+\.\d%)", lambda o: (percent(o[0].accuracy),),
          needs_data=True, slow=True),
    Claim("fsdd_held_out", tuple(train(f"{FSDD} --seed 0 --set test_speaker={name}", f"held-{name}")
                                 for name in SPEAKERS),
          r"\| default \(speaker normalisation, 12 ms window\) \| " + r"(\d+\.\d%) \| " * 5,
          lambda o: tuple(percent(r.accuracy) for r in o), needs_data=True, slow=True),
    Claim("fsdd_inputs", tuple(train(f"{m} --task fsdd --data {{data}} --seed 0", f"inputs-{m}")
                               for m in ("alif", "coba_lif", "two_compartment")),
          r"\| `alif` \| (\d+\.\d%) \| (\d+(?:\.\d)?) ms \|.*\n\| `coba_lif`, weights kept >= 0 \| (\d+\.\d%) \| "
          r"(\d+(?:\.\d)?) ms \|.*\n\| `two_compartment` \| (\d+\.\d%) \| (\d+(?:\.\d)?) ms \|",
          lambda o: sum(((percent(r.accuracy), r.printed(r"compute (\d+\.\d) ms")) for r in o), ()),
          timed=(2, 4, 6), needs_data=True, slow=True),
    Claim("fsdd_sparse", tuple(train(f"{FSDD} --seed 0" + (f" --hidden {n}" if n != 128 else "")
                                     + (f" --connectivity {c}" if c < 1 else ""),
                                     "fsdd0" if (n, c) == (128, 1) else f"fsdd0-n{n}-p{c}") for n, c in SPARSE),
          r"\| 128 \| 1 \(dense\) \| [\d,]+ \| (\d+\.\d%) \| (\d+\.\d) ms \|\n"
          + "".join(rf"\| {n} \| {re.escape(str(c))} \| ([\d,]+) \| (\d+\.\d%) \| (\d+\.\d) ms \|\n"
                    for n, c in SPARSE[1:]),
          lambda o: (percent(o[0].accuracy), o[0].printed(r"compute (\d+\.\d) ms"))
          + sum(((r.printed(r"connectivity [\d.]+: ([\d,]+) of"), percent(r.accuracy), r.printed(r"compute (\d+\.\d) ms"))
                 for r in o[1:]), ()),
          timed=(2,) + tuple(5 + 3 * i for i in range(len(SPARSE) - 1)), needs_data=True, slow=True),
    Claim("mpi", (train(f"{FSDD} --seed 0", "fsdd0"), train(f"{FSDD} --seed 0", "fsdd0-mpi", ranks=2)),
          r"1 process \(2 Numba threads\) [\d.]+ s, (\d+\.\d%); 2 processes \(1\s+thread each\) [\d.]+ s, "
          r"(\d+\.\d%)", lambda o: (percent(o[0].accuracy), percent(o[1].accuracy)), needs_data=True),
]


def locate(claim: Claim, text: str) -> re.Match:
    """The one place in the README that states the claim's figures."""
    found = list(re.finditer(claim.readme, text))
    if len(found) != 1:
        raise LookupError(f"claim {claim.name}: the README states it {len(found)} times, expected once "
                          f"(pattern {claim.readme!r})")
    return found[0]


def run_all(runs: list[Run], data: str, folder: Path, done: dict) -> list[Output]:
    """The outputs of ``runs``, each command run once per invocation (claims share runs)."""
    outputs = []
    for run in runs:
        key = run.args
        if key not in done:
            argv = run.argv(data, folder)
            print("  $ " + " ".join(argv[argv.index("symgrad.cli") + 1:]), flush=True)
            start = time.perf_counter()
            result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            if result.returncode:
                raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
            output = Output(result.stdout, time.perf_counter() - start)
            match = re.search(r"--out (\S+)", run.args.format(data=data, runs=folder))
            metrics = Path(match.group(1)) / "metrics.json" if match else None
            if metrics and metrics.is_file():
                output.metrics = json.loads(metrics.read_text())
            done[key] = output
        outputs.append(done[key])
    return outputs


def check(claim: Claim, text: str, data: str, folder: Path, done: dict) -> tuple[list, list]:
    """(rows of README figure against measured, the README's new text for the claim)."""
    place = locate(claim, text)
    measured = claim.figures(run_all(list(claim.runs), data, folder, done))
    rows = []
    for group, (stated, now) in enumerate(zip(place.groups(), measured), start=1):
        rows.append((claim.name, stated, now, "time" if group in claim.timed else
                     "same" if stated == now else "DIFFERS"))
    return rows, measured


def rewrite(text: str, claim: Claim, measured: tuple) -> str:
    place = locate(claim, text)
    pieces, last = [], place.start()
    for group, value in enumerate(measured, start=1):
        pieces += [text[last:place.start(group)], value]
        last = place.end(group)
    return text[:place.start()] + "".join(pieces) + text[last:]


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the FSDD folder; without it, the claims on FSDD are skipped")
    parser.add_argument("--only", nargs="+", choices=[c.name for c in CLAIMS], help="these claims only")
    parser.add_argument("--quick", action="store_true", help="skip the slow claims (held-out speakers, "
                        "the NumPy backend, the several-inputs table)")
    parser.add_argument("--update", action="store_true", help="write the measured figures into README.md")
    parser.add_argument("--keep", metavar="DIR", help="keep the run folders in DIR (default: a temporary "
                        "folder, removed at the end); docs/fsdd_curves.png is DIR/fsdd0/curves.png")
    args = parser.parse_args(argv)

    text = README.read_text()
    claims = [c for c in CLAIMS if (not args.only or c.name in args.only) and (args.data or not c.needs_data)
              and not (args.quick and c.slow and not args.only)]
    print(f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"commit {commit()}; --workers {WORKERS}")
    rows, done = [], {}
    with tempfile.TemporaryDirectory(prefix="readme-figures-") as scratch:
        if args.keep:
            scratch = str(Path(args.keep).absolute())
        for claim in claims:
            print(f"{claim.name}:", flush=True)
            found, measured = check(claim, text, args.data, Path(scratch), done)
            rows += found
            if args.update:
                text = rewrite(text, claim, measured)
    width = max(len(r[0]) for r in rows) if rows else 5
    print(f"\n{'claim':<{width}}  {'README':>14}  {'measured':>14}")
    for name, stated, now, verdict in rows:
        print(f"{name:<{width}}  {stated:>14}  {now:>14}  {verdict}")
    if args.update:
        README.write_text(text)
        print(f"wrote the measured figures into {README}")
        return 0
    return 1 if any(r[3] == "DIFFERS" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
