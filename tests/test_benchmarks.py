"""The benchmarks at their quick sizes, so that they cannot rot.

One quick run of every benchmark writes into a temporary folder; the tests check that the
JSON, Markdown and plots are there and that the figures are sane. Peers that are not
installed are skipped by the benchmark itself, and their figures are then not checked.
"""
import json

import pytest

from benchmarks.__main__ import MODULES, main


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    main(["--quick", "--out", str(out)])
    return out, json.loads((out / "results.json").read_text())


def test_every_benchmark_writes_json_markdown_and_plots(quick_run):
    out, results = quick_run
    assert results["quick"] is True
    assert set(results["benchmarks"]) == set(MODULES)
    markdown = (out / "results.md").read_text()
    for name, section in results["benchmarks"].items():
        assert f"## {section['title']}" in markdown
        assert section["plots"], name
        for plot in section["plots"]:
            assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
            assert f"]({plot})" in markdown
    assert results["machine"]["cores"] >= 1
    assert "OPENBLAS_CORETYPE" in results["machine"]


def test_eprop_memory_is_flat_in_T_and_bptt_grows(quick_run):
    rows = quick_run[1]["benchmarks"]["memory"]["figures"]["rows"]
    for model in ("lif", "alif"):
        def peaks(rule):
            return [r["peak_bytes"] for r in rows if r["axis"] == "steps" and r["model"] == model
                    and r["rule"] == rule]
        eprop, bptt = peaks("e-prop"), peaks("BPTT")
        assert max(eprop) <= 1.1 * min(eprop), (model, eprop)
        assert bptt == sorted(bptt) and bptt[-1] > 3 * bptt[0], (model, bptt)
        predicted = [r["predicted_trace_bytes"] for r in rows if r["model"] == model and r["rule"] == "e-prop"]
        assert all(p > 0 for p in predicted)
    targets = quick_run[1]["benchmarks"]["memory"]["targets"]
    assert targets and all(t["met"] for t in targets)


def test_alignment_is_exact_without_recurrence(quick_run):
    figures = quick_run[1]["benchmarks"]["alignment"]["figures"]
    for row in figures["models"]:
        assert row["spikes"] > 0, row
        if not row["recurrent"]:
            assert abs(1 - row["cosine"]) < 1e-9, row
        else:
            assert 0 < row["cosine"] <= 1 + 1e-12, row
    training = figures["training"]
    assert all(0 < c <= 1 + 1e-12 for c in training["cosine"])


def test_speed_times_every_installed_implementation(quick_run):
    section = quick_run[1]["benchmarks"]["speed"]
    figures = section["figures"]
    expected = {"symgrad e-prop", "symgrad e-prop, 1 thread", "symgrad BPTT", "symgrad e-prop, NumPy backend"}
    if "JAX" not in section["skipped"]:
        expected |= {"JAX BPTT", "JAX e-prop (per-synapse)"}
        assert max(figures["peer_checks"]["JAX"].values()) < 1e-8
    if "PyTorch" not in section["skipped"]:
        expected |= {"PyTorch BPTT"}
        assert max(figures["peer_checks"]["PyTorch"].values()) < 1e-8
    assert figures["copy_bandwidth"] > 1e8
    for setting in figures["settings"].values():
        assert set(setting["seconds_per_step"]) == expected
        assert all(0 < t < 1 for t in setting["seconds_per_step"].values())


def test_plan_payoff_saves_memory_where_the_plan_drops_per_synapse_traces(quick_run):
    for row in quick_run[1]["benchmarks"]["plan"]["figures"]["rows"]:
        planned, dense = row["planned"], row["dense"]
        assert len(planned["per_synapse"]) < len(dense["per_synapse"]), row
        assert planned["predicted_bytes"] < dense["predicted_bytes"], row
        if not planned["per_synapse"] and row["kappa"] == 0:  # nothing per synapse at all
            assert planned["peak_bytes"] < dense["peak_bytes"], row


def test_the_nir_benchmark_times_each_version_of_the_imported_network(quick_run):
    section = quick_run[1]["benchmarks"]["nir"]
    rows = section["figures"]["rows"]
    assert [(row["per_neuron"], row["detach_reset"]) for row in rows] == [(True, False), (False, False),
                                                                         (False, True)]
    for row in rows:
        assert row["symgrad_eprop"] > 0 and row["symgrad_bptt"] > 0
        assert ("snntorch_bptt" in row) != ("snnTorch" in section["skipped"])
