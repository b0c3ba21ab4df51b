"""Non-spiking peers on FSDD's leave-one-speaker-out folds: where does the accuracy limit lie?

Trains a conventional network in PyTorch (BPTT by autograd) for every held-out speaker, on the
same front end as `symgrad train --task fsdd` (speaker-normalised mel band levels, or the
spikes encoded from them), and prints a markdown row to set beside the one printed by
scripts/fsdd_speakers.py. If ordinary networks given the same input and the same four
training voices do no better than the spiking network, the limit lies in the data.

    python scripts/fsdd_peers.py ../shared/data/fsdd [--net gru|cnn] [--readout mean|max]
                                 [--input levels|spikes] [--epochs 30] [--seed 0]

Needs PyTorch (`pip install -e ".[bench]"`).
"""
import argparse
import sys
import time

import numpy as np

from fsdd_speakers import held_out_table  # this script's folder is on sys.path
from symgrad.data import fsdd

CHANNELS, DT, STEPS = 40, 0.01, 100  # symgrad's fsdd defaults


def features(folder: str, kind: str):
    """(n, STEPS, CHANNELS) float32 inputs, labels and speakers for every recording in folder."""
    recordings, dbs = fsdd.band_powers(fsdd.list_recordings(folder), CHANNELS, DT, STEPS)
    levels = np.stack([fsdd.compress(db, STEPS) for db in dbs])
    x = levels if kind == "levels" else fsdd.encode(levels, DT)
    labels = np.array([digit for _, digit, _, _ in recordings])
    speakers = np.array([speaker for _, _, speaker, _ in recordings])
    return x.astype(np.float32), labels, speakers


def build(torch, net: str, readout: str):
    nn = torch.nn

    class GRU(nn.Module):
        """128 GRU units and a linear readout per step, pooled over time."""

        def __init__(self):
            super().__init__()
            self.gru, self.out = nn.GRU(CHANNELS, 128, batch_first=True), nn.Linear(128, 10)

        def forward(self, x):
            y = self.out(self.gru(x)[0])
            return y.max(dim=1).values if readout == "max" else y.mean(dim=1)

    def cnn():
        """Three 3x3 convolutions over (time, channel) with batch norm, then a global max."""
        layers, width = [], 1
        for i, out in enumerate((32, 64, 128)):
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            layers += [nn.MaxPool2d(2)] if i < 2 else []
            width = out
        return nn.Sequential(nn.Unflatten(1, (1, STEPS)), *layers, nn.AdaptiveMaxPool2d(1),
                             nn.Flatten(), nn.Dropout(0.3), nn.Linear(width, 10))

    return GRU() if net == "gru" else cnn()


def held_out_accuracy(torch, args, x, labels, train, test) -> float:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build(torch, args.net, args.readout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if args.net == "gru" else 3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    x, labels = torch.from_numpy(x), torch.from_numpy(labels)
    for _ in range(args.epochs):
        model.train()
        for batch in np.array_split(rng.permutation(train), max(1, len(train) // 32)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), labels[batch]).backward()
            opt.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        return float((model(x[test]).argmax(dim=1) == labels[test]).float().mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="FSDD folder (or any folder of {digit}_{speaker}_{index}.wav)")
    parser.add_argument("--net", choices=["gru", "cnn"], default="gru")
    parser.add_argument("--readout", choices=["mean", "max"], default="mean",
                        help="pooling of the GRU's readout over time (the CNN always takes the max)")
    parser.add_argument("--input", choices=["levels", "spikes"], default="levels")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    try:
        x, labels, speakers = features(args.data, args.input)
    except fsdd.DataError as err:
        print(f"fsdd_peers: error: {err}", file=sys.stderr)
        return 1
    try:
        import torch
    except ImportError:
        print("fsdd_peers: error: PyTorch is not installed (pip install -e \".[bench]\")", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    name = f"{args.net}" + (f", {args.readout} readout" if args.net == "gru" else "") + f", {args.input}"
    accuracy = {}
    for speaker in sorted(set(speakers)):
        start = time.time()
        train, test = np.flatnonzero(speakers != speaker), np.flatnonzero(speakers == speaker)
        accuracy[speaker] = held_out_accuracy(torch, args, x, labels, train, test)
        print(f"{name}, without {speaker}: {100 * accuracy[speaker]:.1f}% ({time.time() - start:.0f} s)",
              flush=True)
    print("\n" + held_out_table(name, accuracy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
