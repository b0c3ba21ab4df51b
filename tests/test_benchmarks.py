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


def test_the_trained_network_is_timed_against_the_peers_on_real_inputs(quick_run):
    from benchmarks.overhead import fsdd_config

    section = quick_run[1]["benchmarks"]["trained"]
    figures = section["figures"]
    for row in figures["wall"]:
        assert row["wall_s"] > 0 and row["compute_ms"] > 0 and 0 <= row["accuracy"] <= 100, row
    if "FSDD" in section["skipped"]:
        assert [row["task"] for row in figures["wall"]] == ["randman"]
        pytest.skip(section["skipped"]["FSDD"])
    assert [row["task"] for row in figures["wall"]] == ["fsdd"]  # quick: the comparison's own run
    comparison, defaults = figures["comparison"], fsdd_config()
    assert (comparison["batch"], comparison["hidden"], comparison["loss"]) == (defaults.batch, defaults.hidden,
                                                                            defaults.loss)
    peers = {peer for peer in ("JAX", "PyTorch") if peer not in section["skipped"]}
    assert set(comparison["seconds_per_batch"]) == {"symgrad e-prop", "symgrad BPTT"} | {f"{p} BPTT" for p in peers}
    assert all(0 < t < 10 for t in comparison["seconds_per_batch"].values())
    assert set(comparison["peer_checks"]) == peers
    assert all(max(errors.values()) < 1e-8 for errors in comparison["peer_checks"].values())
    # The trained network is active, and far from saturated: its rows at rest are the point.
    assert 0 < comparison["spike_rate"] < 0.5
    assert 0 < comparison["active_rows"] < 1
    names = [target["name"] for target in section["targets"]]
    assert ("JAX" in peers) == any("/ JAX BPTT" in name for name in names)


def test_overhead_is_timed_on_a_network_without_work_and_against_N(quick_run):
    from benchmarks.overhead import BPTT, EPROP, JAX_BPTT, LIMIT_US, fsdd_config

    section = quick_run[1]["benchmarks"]["overhead"]
    figures = section["figures"]
    rows = figures["overhead"]["rows"]
    assert [(row["layers"], row["loss"]) for row in rows] == [(1, fsdd_config().loss), (1, "ce"), (2, "ce")]
    for row in rows:
        assert row["spikes"][0] > 0, row  # a silent network has no work to skip either
        assert 0 < row[EPROP] < 0.01 and 0 < row[BPTT] < 0.01, row
    times = figures["scaling"]["seconds_per_step"]
    assert set(times) == {EPROP, BPTT} | ({JAX_BPTT} if "JAX" not in section["skipped"] else set())
    sizes = list(times[EPROP])
    assert len(sizes) >= 2 and all(list(per_n) == sizes for per_n in times.values())
    assert all(0 < t < 1 for per_n in times.values() for t in per_n.values())
    for n in sizes:
        activity = figures["scaling"]["activity"][n]
        assert 0 < activity["spike_rate"] < 0.5 and 0 < activity["active_rows"] <= 1, (n, activity)
    targets = {target["name"]: target for target in section["targets"]}
    assert len(targets) == 2 and all(target["limit"] == LIMIT_US for target in targets.values())
