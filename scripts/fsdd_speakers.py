"""Leave one speaker out on FSDD: how well does a network recognise a voice it never heard?

For every speaker in the folder, trains `symgrad train MODEL --task fsdd --set
test_speaker=NAME` (every other speaker's recordings for training, all of NAME's for testing)
and prints a markdown table of the final test accuracies. Extra arguments go to every
`symgrad train`, e.g. `--set augment=0` or `--epochs 12`.

    python scripts/fsdd_speakers.py ../shared/data/fsdd [--model alif] [--out runs/speakers] [-- EXTRA...]

Runs that already finished in OUT are reused, so an interrupted study resumes where it stopped.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from symgrad.data import fsdd


def held_out_table(name: str, accuracy: dict) -> str:
    """A markdown table: one row ``name`` of accuracies by held-out speaker, and their mean."""
    mean = sum(accuracy.values()) / len(accuracy)
    return "\n".join([
        "| held-out speaker | " + " | ".join(accuracy) + " | mean |",
        "|---" * (len(accuracy) + 2) + "|",
        f"| {name} | " + " | ".join(f"{100 * a:.1f}%" for a in accuracy.values()) + f" | {100 * mean:.1f}% |"])


def finished(run: Path) -> bool:
    """Whether the run in folder ``run`` has trained all the epochs its config asks for."""
    epochs = json.loads((run / "config.json").read_text())["epochs"]
    metrics = run / "metrics.json"
    return metrics.is_file() and len(json.loads(metrics.read_text())["test_acc"]) >= epochs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- go to every symgrad train.")
    parser.add_argument("data", help="FSDD folder (or any folder of {digit}_{speaker}_{index}.wav)")
    parser.add_argument("--model", default="alif")
    parser.add_argument("--out", default="runs/speakers", help="folder for the runs")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = parser.parse_args(argv[:cut]), argv[cut + 1:]
    try:
        speakers = sorted({speaker for _, _, speaker, _ in fsdd.list_recordings(args.data)})
    except fsdd.DataError as err:
        print(f"fsdd_speakers: error: {err}", file=sys.stderr)
        return 1
    accuracy = {}
    for speaker in speakers:
        run = Path(args.out) / f"{args.model}-without-{speaker}"
        command = [sys.executable, "-m", "symgrad.cli", "train", args.model, "--task", "fsdd",
                   "--data", args.data, "--set", f"test_speaker={speaker}", "--out", str(run), *extra]
        if (run / "checkpoint.npz").is_file():
            if finished(run):
                command = None
            else:
                command.append("--resume")
        if command:
            print(" ".join(command), flush=True)
            if subprocess.run(command).returncode != 0:
                return 1
        accuracy[speaker] = json.loads((run / "metrics.json").read_text())["test_acc"][-1]
    print("\n" + held_out_table(args.model, accuracy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
